"""A stored AAC-LC stream seen in the frequency domain, on its own frame grid: which
scale-factor bands of which frames carry the decoder's noise (perceptual noise
substitution, PNS), and the MDCT coefficients of any decoded signal, so that a window of
a PNS recording can be compared with the full decode band by band, frame by frame.

Used by ``test_pns.py`` and by ``benchmarks/bench_pns.py``. Long windows at 44.1 and
48 kHz only (one table of scale-factor bands); short-window frames are left out.

Where the blocks lie (decoded samples, before the encoder delay is cut)::

    decoded:    | frame p-1 | frame p   | frame p+1 | frame p+2 |
    block p:                [ rise      | fall      ]             IMDCT of packet p, 2048 samples
    block p+1:                          [ rise      | fall      ]

Frame ``p`` of the output is the first half of block ``p`` plus the second half of block
``p - 1``; with the stream's own windows (shape and sequence from each frame's
``ics_info``) the forward MDCT of a decoded signal over block ``p`` gives back packet
``p``'s coefficients, to float rounding (time-domain aliasing cancels).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import av
import numpy as np

import aacdata
from aacdata.codecs._adts import parse_adts

N = 1024
"""MDCT coefficients per long block (half its 2048 samples)."""
SWB_LONG = np.array(
    [0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 48, 56, 64, 72, 80, 88, 96, 108, 120, 132, 144, 160, 176, 196, 216,
     240, 264, 292, 320, 352, 384, 416, 448, 480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800, 832, 864, 896,
     928, 1024]
)  # fmt: skip
"""Scale-factor band offsets of a long window at 44.1 and 48 kHz (ISO/IEC 14496-3, ``swb_offset_long_window``)."""
NUM_BANDS = SWB_LONG.size - 1
NOISE_HCB = 13
"""The section codebook that codes a band as noise (an energy only)."""
ONLY_LONG, LONG_START, EIGHT_SHORT, LONG_STOP = 0, 1, 2, 3
NOISE_THRESHOLD = 1e-6
"""A band carries the decoder's noise where two decodes with different generator states
differ by more than this, relative to the stream's largest coefficient: ten times the
float32 rounding of the analysis (measured at most 1.3e-7 in bands without noise)."""

_n = np.arange(2 * N)
_COS = np.cos(np.pi / N * (_n[:, None] + 0.5 + N / 2) * (np.arange(N)[None, :] + 0.5))


def _rise(length: int, shape: int) -> np.ndarray:
    """Rising half of a sine (shape 0) or Kaiser-Bessel-derived (shape 1) window of ``2 * length``."""
    if shape == 0:
        return np.sin(np.pi / (2 * length) * (np.arange(length) + 0.5))
    alpha = 4.0 if length == N else 6.0  # KBD alphas of long and short windows
    kaiser = np.cumsum(np.kaiser(length + 1, np.pi * alpha))
    return np.sqrt(kaiser[:-1] / kaiser[-1])


def block_window(sequence: int, previous_shape: int, shape: int) -> np.ndarray | None:
    """The decoder's 2048-sample window of a long block (None for eight short windows):
    its rising half has the previous frame's shape, its falling half the frame's own."""
    zeros, ones = np.zeros(448), np.ones(448)  # (1024 - 128) / 2: a start/stop window's flat parts
    if sequence == ONLY_LONG:
        return np.concatenate([_rise(N, previous_shape), _rise(N, shape)[::-1]])
    if sequence == LONG_START:
        return np.concatenate([_rise(N, previous_shape), ones, _rise(128, shape)[::-1], zeros])
    if sequence == LONG_STOP:
        return np.concatenate([zeros, _rise(128, previous_shape), ones, _rise(N, shape)[::-1]])
    return None


class _Bits:
    def __init__(self, data: bytes, pos: int) -> None:
        self.value, self.size, self.pos = int.from_bytes(data, "big"), len(data) * 8, pos

    def get(self, n: int) -> int:
        self.pos += n
        return (self.value >> (self.size - self.pos)) & ((1 << n) - 1)


@dataclass(frozen=True, slots=True)
class FrameInfo:
    """What an ADTS frame's first channel element says of its windows and bands."""

    sequence: int
    shape: int
    one_window: bool
    """Every channel uses this window (a mono frame, or a channel pair with a common window)."""
    noise_bands: np.ndarray | None
    """bool ``(NUM_BANDS,)``: the first channel's bands coded with the noise codebook (long windows)."""


def frame_info(frame: bytes) -> FrameInfo:
    """Parse an ADTS frame up to its first channel's section data (no Huffman decoding needed)."""
    bits = _Bits(frame, 56 if frame[1] & 1 else 72)  # ADTS header without / with CRC
    element = bits.get(3)
    while element == 6:  # a fill element (FFmpeg's encoder names itself in the first frame)
        count = bits.get(4)
        count += bits.get(8) - 1 if count == 15 else 0
        bits.pos += 8 * count
        element = bits.get(3)
    if element not in (0, 1):
        raise ValueError(f"first element is of type {element}; expected a single channel (0) or a pair (1)")
    bits.get(4)  # element_instance_tag
    common = bits.get(1) if element == 1 else 0
    if not common:
        bits.get(8)  # global_gain
    bits.get(1)  # ics_reserved_bit
    sequence, shape = bits.get(2), bits.get(1)
    if sequence == EIGHT_SHORT:
        return FrameInfo(sequence, shape, element == 0 or bool(common), None)
    max_sfb = bits.get(6)
    if bits.get(1):
        raise ValueError("predictor data in an AAC-LC frame")
    if common:
        if bits.get(2) == 1:  # ms_mask_present: one bit per band
            bits.get(max_sfb)
        bits.get(8)  # the first channel's global_gain
    noise = np.zeros(NUM_BANDS, bool)
    band = 0
    while band < max_sfb:
        codebook, length = bits.get(4), 0
        while (step := bits.get(5)) == 31:  # section lengths escape at 31 in long windows
            length += step
        length += step
        noise[band : band + length] = codebook == NOISE_HCB
        band += length
    return FrameInfo(sequence, shape, element == 0 or bool(common), noise)


def decode(data: bytes, offsets: np.ndarray, sizes: np.ndarray, decoder: av.CodecContext) -> np.ndarray:
    """Every frame of a stream through one decoder: float32 ``(C, num_frames * 1024)``."""
    out = []
    for offset, size in zip(offsets.tolist(), sizes.tolist(), strict=True):
        for frame in decoder.decode(av.Packet(data[offset : offset + size])):
            out.append(np.stack([np.frombuffer(p, np.float32, frame.samples) for p in frame.planes]))
    return np.concatenate(out, axis=1)


@dataclass(frozen=True, slots=True)
class Comparison:
    """A window against the full decode, on the stream's frame grid.

    ``outside``: the largest difference of an MDCT coefficient outside the noise bands,
    relative to the stream's largest coefficient; ``noise_db``: float64 ``(K,)``, the
    energy of each noise band of each block in the window against the full decode's (dB);
    ``noise``: bool ``(C, blocks, NUM_BANDS)``, those bands; ``blocks``: how many blocks
    were compared.
    """

    noise_db: np.ndarray
    noise: np.ndarray
    outside: float
    blocks: int


class StreamFrames:
    """A recording's stored frames: their windows, MDCT analysis, and where the noise is.

    ``noise``: bool ``(C, num_blocks, NUM_BANDS)``, the bands of each block whose decoded
    coefficients change when the decoder's noise generator starts from another state (the
    stream decoded twice through one decoder, flushed between). Those are the bands coded
    as noise and, in frames whose TNS filter reaches past them, the bands the filter
    spreads the noise into. Blocks 0 and 1 are left out (all False): a flushed decoder's
    first frame differs from a new decoder's, noise or not.
    """

    def __init__(self, store: aacdata.AACStore, rec: aacdata.Recording) -> None:
        if rec.sample_rate not in (44_100, 48_000) or rec.time_expansion != 1.0:
            raise ValueError(f"{rec.id}: {rec.sample_rate} Hz; the band table here is for 44.1 and 48 kHz")
        self.num_channels, self.delay = rec.num_channels, rec.encoder_delay
        data = store.adts_bytes(rec)
        frames = parse_adts(data)
        self.infos = [
            frame_info(data[o : o + s]) for o, s in zip(frames.offsets.tolist(), frames.sizes.tolist(), strict=True)
        ]
        self.windows: list[np.ndarray | None] = [None]  # block 0: the previous frame's shape is unknown
        for prev, info in itertools.pairwise(self.infos):
            self.windows.append(block_window(info.sequence, prev.shape, info.shape) if info.one_window else None)
        decoder = av.CodecContext.create("aac", "r")
        first = decode(data, frames.offsets, frames.sizes, decoder)[: self.num_channels]
        decoder.flush_buffers()  # keeps the generator's state: the second decode draws other noise
        second = decode(data, frames.offsets, frames.sizes, decoder)[: self.num_channels]
        self.num_blocks = first.shape[1] // N - 1
        a, b = self.mdct(first, 0, self.num_blocks), self.mdct(second, 0, self.num_blocks)
        self.peak = float(np.nanmax(np.abs(a)))
        differ = np.nan_to_num(np.abs(a - b)) > NOISE_THRESHOLD * self.peak
        self.noise = np.logical_or.reduceat(differ, SWB_LONG[:-1], axis=-1)
        self.noise[:, :2] = False
        self.known = np.array([w is not None for w in self.windows[: self.num_blocks]])
        self.known[:2] = False

    def mdct(self, decoded: np.ndarray, first: int, stop: int) -> np.ndarray:
        """MDCT of blocks ``[first, stop)`` of a signal in decoded samples (``(C, T)``,
        sample 0 = the first decoded sample): float64 ``(C, stop - first, N)``, NaN for
        blocks of unknown windows."""
        out = np.full((decoded.shape[0], stop - first, N), np.nan)
        for j in range(first, stop):
            window = self.windows[j]
            if window is not None:
                out[:, j - first] = (decoded[:, j * N : j * N + 2 * N].astype(np.float64) * window) @ _COS
        return out

    def inside(self, start: int, num_samples: int) -> tuple[int, int]:
        """Blocks ``[first, stop)`` that lie wholly in the window ``[start, start + num_samples)``
        of the source timeline."""
        lo, hi = start + self.delay, start + self.delay + num_samples
        return max(2, -(-lo // N)), max(2, (hi - 2 * N) // N + 1)

    def compare(self, window: np.ndarray, reference: np.ndarray, start: int) -> Comparison:
        """A window against the same samples of the full decode, over the blocks wholly inside it."""
        first, stop = self.inside(start, window.shape[1])
        if stop <= first:
            return Comparison(np.zeros(0), np.zeros((self.num_channels, 0, NUM_BANDS), bool), 0.0, 0)
        lo = start + self.delay
        span = np.zeros((self.num_channels, max(lo + window.shape[1], (stop + 1) * N)))
        span[:, lo : lo + window.shape[1]] = window
        ours = self.mdct(span, first, stop)
        span[:, lo : lo + window.shape[1]] = reference
        theirs = self.mdct(span, first, stop)
        keep = self.known[first:stop]
        ours, theirs, noise = ours[:, keep], theirs[:, keep], self.noise[:, first:stop][:, keep]
        bins = np.repeat(noise, np.diff(SWB_LONG), axis=-1)
        outside = np.abs(ours - theirs)[~bins]
        energy = np.add.reduceat(ours**2, SWB_LONG[:-1], axis=-1), np.add.reduceat(theirs**2, SWB_LONG[:-1], axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio_db = 10 * np.log10(energy[0][noise] / energy[1][noise])
        return Comparison(
            noise_db=ratio_db,
            noise=noise,
            outside=float(outside.max()) / self.peak if outside.size else 0.0,
            blocks=int(keep.sum()),
        )


def third_octaves(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Energy of ``x`` ``(C, T)`` (T >= 1024) in 1/3-octave bands from 25 Hz up to the
    Nyquist frequency: Hann-windowed blocks of 1024 samples, hop 512, summed over blocks
    and channels."""
    edges = [f for f in 25 * 2 ** (np.arange(40) / 3) if f < sample_rate / 2]
    blocks = np.lib.stride_tricks.sliding_window_view(x, 1024, axis=1)[:, ::512]
    power = (np.abs(np.fft.rfft(blocks * np.hanning(1024), axis=-1)) ** 2).sum(axis=(0, 1))
    freqs = np.fft.rfftfreq(1024, 1 / sample_rate)
    return np.array([power[(freqs >= lo) & (freqs < hi)].sum() for lo, hi in itertools.pairwise(edges)])
