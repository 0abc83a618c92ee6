"""Frames in and out: the frame codecs (AAC-LC in ADTS framing), their parsers and decoders."""
