"""Source files to PCM (demux, decode, remix, resample, encode) and PCM back to audio files."""
