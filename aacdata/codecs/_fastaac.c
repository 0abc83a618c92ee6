/*
 * Decoding a run of ADTS frames into a window in one call: the loop of
 * aacdata.codecs._decoder.decode_into without a Python step per frame.
 *
 * The module links against nothing: it calls the FFmpeg that PyAV has already loaded,
 * through function addresses the Python side hands to init(). It touches only fields of
 * FFmpeg's structs that have kept their place for many major versions (AVPacket.data and
 * .size; AVFrame.data, .nb_samples and .format), and the Python side checks its first
 * window in every process against PyAV's decode before trusting it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#if defined(__GLIBC__)
#include <malloc.h>
#define USABLE_SIZE(p) malloc_usable_size(p)
#elif defined(__APPLE__)
#include <malloc/malloc.h>
#define USABLE_SIZE(p) malloc_size(p)
#endif
#include <stdint.h>
#include <string.h>
#ifndef _WIN32
#include <unistd.h>
#endif

#define FASTAAC_VERSION 4 /* what aacdata/codecs/_fast.py expects: a stale build is not used */
#define SAMPLES_PER_FRAME 1024
#define NUM_DATA_POINTERS 8
#define SAMPLE_FMT_FLTP 8
#define CODEC_ID_AAC 0x15002
#define NOISE_SEED 0x1f2e3d4cu /* the AAC decoder's noise generator state when it opens */
/* A usable size outside this range is not believed (malloc_usable_size from an allocator
 * other than the one av_malloc used): no seed search, no reset. */
#define MIN_PRIV_SIZE 256
#define MAX_PRIV_SIZE (1 << 20)
#define ERROR_EAGAIN (-EAGAIN)
#define ERROR_EOF (-(int)(('E') | ('O' << 8) | ('F' << 16) | ((unsigned)(' ') << 24)))

/* The leading fields of AVPacket and AVFrame (unchanged since FFmpeg 2.x). */
typedef struct {
    void *buf;
    int64_t pts;
    int64_t dts;
    uint8_t *data;
    int size;
} PacketHead;

/* The leading fields of AVCodecContext (as here since FFmpeg 4.0 / lavc 58, which dropped
 * codec_name[32] and stream_codec_tag; Decoder_new checks codec and codec_id). */
typedef struct {
    const void *av_class;
    int log_level_offset;
    int codec_type;
    const void *codec;
    int codec_id;
    unsigned codec_tag;
    void *priv_data;
} ContextHead;

typedef struct {
    uint8_t *data[NUM_DATA_POINTERS];
    int linesize[NUM_DATA_POINTERS];
    uint8_t **extended_data;
    int width, height;
    int nb_samples;
    int format;
} FrameHead;

typedef const void *(*find_decoder_fn)(const char *);
typedef void *(*alloc_context_fn)(const void *);
typedef int (*open_fn)(void *, const void *, void **);
typedef void (*free_context_fn)(void **);
typedef int (*send_packet_fn)(void *, const void *);
typedef int (*receive_frame_fn)(void *, void *);
typedef void (*flush_fn)(void *);
typedef void *(*packet_alloc_fn)(void);
typedef void (*packet_free_fn)(void **);
typedef int (*new_packet_fn)(void *, int);
typedef void (*packet_unref_fn)(void *);
typedef void *(*frame_alloc_fn)(void);
typedef void (*frame_free_fn)(void **);
typedef void (*frame_unref_fn)(void *);
typedef int (*opt_set_int_fn)(void *, const char *, int64_t, int);

static struct {
    find_decoder_fn find_decoder;
    alloc_context_fn alloc_context;
    open_fn open;
    free_context_fn free_context;
    send_packet_fn send_packet;
    receive_frame_fn receive_frame;
    flush_fn flush;
    packet_alloc_fn packet_alloc;
    packet_free_fn packet_free;
    new_packet_fn new_packet;
    packet_unref_fn packet_unref;
    frame_alloc_fn frame_alloc;
    frame_free_fn frame_free;
    frame_unref_fn frame_unref;
    opt_set_int_fn opt_set_int;
    int ready;
} ff;

static PyObject *init(PyObject *Py_UNUSED(self), PyObject *args) {
    unsigned long long p[15];
    if (!PyArg_ParseTuple(args, "KKKKKKKKKKKKKKK", &p[0], &p[1], &p[2], &p[3], &p[4], &p[5], &p[6], &p[7],
                          &p[8], &p[9], &p[10], &p[11], &p[12], &p[13], &p[14]))
        return NULL;
    for (int i = 0; i < 15; i++) {
        if (!p[i]) {
            PyErr_Format(PyExc_ValueError, "function address %d is null", i);
            return NULL;
        }
    }
    ff.find_decoder = (find_decoder_fn)(uintptr_t)p[0];
    ff.alloc_context = (alloc_context_fn)(uintptr_t)p[1];
    ff.open = (open_fn)(uintptr_t)p[2];
    ff.free_context = (free_context_fn)(uintptr_t)p[3];
    ff.send_packet = (send_packet_fn)(uintptr_t)p[4];
    ff.receive_frame = (receive_frame_fn)(uintptr_t)p[5];
    ff.flush = (flush_fn)(uintptr_t)p[6];
    ff.packet_alloc = (packet_alloc_fn)(uintptr_t)p[7];
    ff.packet_free = (packet_free_fn)(uintptr_t)p[8];
    ff.new_packet = (new_packet_fn)(uintptr_t)p[9];
    ff.packet_unref = (packet_unref_fn)(uintptr_t)p[10];
    ff.frame_alloc = (frame_alloc_fn)(uintptr_t)p[11];
    ff.frame_free = (frame_free_fn)(uintptr_t)p[12];
    ff.frame_unref = (frame_unref_fn)(uintptr_t)p[13];
    ff.opt_set_int = (opt_set_int_fn)(uintptr_t)p[14];
    ff.ready = 1;
    Py_RETURN_NONE;
}

typedef struct {
    PyObject_HEAD void *ctx;
    void *packet;
    void *frame;
    long decodes; /* decode_into calls since it opened */
    int busy;     /* decode_into runs without the GIL: no other call may touch ctx meanwhile */
#ifndef _WIN32
    pid_t owner; /* the process that opened it */
#endif
} Decoder;

static void Decoder_dealloc(Decoder *d) {
#ifndef _WIN32
    /* A copy inherited through fork() may have been mid-decode in another thread of the
     * parent (a locked buffer-pool mutex, half-updated state): leak it, never free it. */
    if (d->owner != getpid()) {
        Py_TYPE(d)->tp_free((PyObject *)d);
        return;
    }
#endif
    if (d->frame) ff.frame_free(&d->frame);
    if (d->packet) ff.packet_free(&d->packet);
    if (d->ctx) ff.free_context(&d->ctx);
    Py_TYPE(d)->tp_free((PyObject *)d);
}

static int check_idle(Decoder *d) {
    if (d->busy) {
        PyErr_SetString(PyExc_RuntimeError, "this decoder is in use by another thread: an AACStore is for one thread at a time (open one per thread)");
        return -1;
    }
    return 0;
}

/* The usable size of the private context, or 0 where it is unknown or not believable. */
static size_t priv_size(Decoder *d) {
#ifdef USABLE_SIZE
    size_t size = USABLE_SIZE(((ContextHead *)d->ctx)->priv_data);
    return size >= MIN_PRIV_SIZE && size <= MAX_PRIV_SIZE ? size : 0;
#else
    (void)d;
    return 0;
#endif
}

static PyObject *Decoder_new(PyTypeObject *type, PyObject *args, PyObject *Py_UNUSED(kwds)) {
    if (!ff.ready) {
        PyErr_SetString(PyExc_RuntimeError, "init() has not been called");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "")) return NULL;
    Decoder *d = (Decoder *)type->tp_alloc(type, 0);
    if (!d) return NULL;
#ifndef _WIN32
    d->owner = getpid();
#endif
    const void *codec = ff.find_decoder("aac");
    if (codec) d->ctx = ff.alloc_context(codec);
    d->packet = ff.packet_alloc();
    d->frame = ff.frame_alloc();
    if (!codec || !d->ctx || !d->packet || !d->frame) {
        Py_DECREF(d);
        PyErr_SetString(PyExc_MemoryError, "cannot create an AAC decoder");
        return NULL;
    }
    int err = ff.opt_set_int(d->ctx, "threads", 1, 0);
    if (err >= 0) err = ff.open(d->ctx, codec, NULL);
    if (err < 0) {
        Py_DECREF(d);
        PyErr_Format(PyExc_RuntimeError, "cannot open an AAC decoder (error %d)", err);
        return NULL;
    }
    const ContextHead *head = (const ContextHead *)d->ctx;
    /* AVPacket's head: a new packet's data and size where expected, and its AVBufferRef
     * (buffer, data) pointing at the same bytes. */
    const PacketHead *pkt = (const PacketHead *)d->packet;
    int packet_ok = ff.new_packet(d->packet, 100) >= 0 && pkt->size == 100 && pkt->data && pkt->buf &&
                    ((uint8_t *const *)pkt->buf)[1] == pkt->data;
    ff.packet_unref(d->packet);
    if (head->codec != codec || head->codec_id != CODEC_ID_AAC || !head->priv_data || !packet_ok) {
        Py_DECREF(d);
        PyErr_SetString(PyExc_RuntimeError, "AVCodecContext's or AVPacket's leading fields are not where expected");
        return NULL;
    }
    return (PyObject *)d;
}

static PyObject *Decoder_decodes(Decoder *d, PyObject *Py_UNUSED(unused)) { return PyLong_FromLong(d->decodes); }

/* Byte offsets in the decoder's private context that hold the noise generator's seed:
 * on a decoder that has not decoded yet, the place of its noise state (where exactly
 * one is found; the caller proves it before use). Empty where the size of the private
 * context cannot be known. */
static PyObject *Decoder_seed_offsets(Decoder *d, PyObject *Py_UNUSED(unused)) {
    if (check_idle(d) < 0) return NULL;
    PyObject *list = PyList_New(0);
    if (!list) return NULL;
    const unsigned char *priv = ((const ContextHead *)d->ctx)->priv_data;
    size_t size = priv_size(d);
    for (size_t off = 0; off + 4 <= size; off += 4) {
        uint32_t v;
        memcpy(&v, priv + off, 4);
        if (v == NOISE_SEED) {
            PyObject *o = PyLong_FromSize_t(off);
            if (!o || PyList_Append(list, o) < 0) {
                Py_XDECREF(o);
                Py_DECREF(list);
                return NULL;
            }
            Py_DECREF(o);
        }
    }
    return list;
}

static int noise_offset_ok(Decoder *d, Py_ssize_t off) {
    return off >= 0 && off % 4 == 0 && (size_t)off + 4 <= priv_size(d);
}

static PyObject *Decoder_noise_state(Decoder *d, PyObject *args) {
    Py_ssize_t off;
    if (check_idle(d) < 0 || !PyArg_ParseTuple(args, "n", &off)) return NULL;
    if (!noise_offset_ok(d, off)) return PyErr_Format(PyExc_ValueError, "offset %zd is outside the context", off);
    uint32_t v;
    memcpy(&v, (char *)((ContextHead *)d->ctx)->priv_data + off, 4);
    return PyLong_FromUnsignedLong(v);
}

/* flush_buffers, and the noise generator back to its state when the decoder opened. */
static PyObject *Decoder_reset_noise(Decoder *d, PyObject *args) {
    Py_ssize_t off;
    if (check_idle(d) < 0 || !PyArg_ParseTuple(args, "n", &off)) return NULL;
    if (!noise_offset_ok(d, off)) return PyErr_Format(PyExc_ValueError, "offset %zd is outside the context", off);
    ff.flush(d->ctx);
    uint32_t seed = NOISE_SEED;
    memcpy((char *)((ContextHead *)d->ctx)->priv_data + off, &seed, 4);
    Py_RETURN_NONE;
}

static PyObject *Decoder_flush(Decoder *d, PyObject *Py_UNUSED(unused)) {
    if (check_idle(d) < 0) return NULL;
    ff.flush(d->ctx);
    Py_RETURN_NONE;
}

/* decode_into(data, num_frames, preroll, skip, out, coded) -> (code, a, b)
 *
 * Decodes the frames in `data` (fed as one packet), drops the output of the first
 * `preroll` frames and then `skip` samples, and writes the next out.shape[1] samples of
 * the first out.shape[0] of the `coded` planes into `out` (float32, 2-D, each row
 * contiguous). Returns (0, 0, 0) when done; otherwise the Python side words the error
 * from (code, a, b): 1: the decoder failed with error a; 2: a frames decoded, b expected;
 * 3: frame a has sample format b, not planar float; 4: frame a has b samples; 5: frame a
 * has b planes; 6: the frames filled a samples of b; 7: frame a's layout is not as expected
 * (extended_data not data, or planes of b bytes).
 */
static PyObject *Decoder_decode_into(Decoder *d, PyObject *args) {
    Py_buffer data;
    PyObject *out_obj;
    Py_ssize_t num_frames, preroll, skip, coded;
    if (check_idle(d) < 0) return NULL;
    if (!PyArg_ParseTuple(args, "y*nnnOn", &data, &num_frames, &preroll, &skip, &out_obj, &coded)) return NULL;
    /* skip bounded so that -skip and total - pos cannot overflow */
    if (data.len > INT32_MAX - 64 || num_frames < 0 || preroll < 0 || skip < 0 || skip > PY_SSIZE_T_MAX / 4) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, "data over 2 GiB, or num_frames, preroll or skip negative or too large");
        return NULL;
    }
    Py_buffer out;
    if (PyObject_GetBuffer(out_obj, &out, PyBUF_STRIDES | PyBUF_WRITABLE | PyBUF_FORMAT) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (out.ndim != 2 || !out.shape || !out.strides || out.itemsize != 4 || !out.format ||
        strcmp(out.format, "f") != 0 || out.strides[1] != 4 || out.shape[0] < 1 || out.shape[0] > coded ||
        coded > NUM_DATA_POINTERS) {
        PyBuffer_Release(&out);
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, "out must be a 2-D float32 array with contiguous rows, at most coded rows");
        return NULL;
    }
    const Py_ssize_t channels = out.shape[0], total = out.shape[1], row_stride = out.strides[0];
    char *const base = (char *)out.buf;
    long code = 0, ea = 0, eb = 0;
    Py_ssize_t frames = 0, pos = -skip;
    int err;
    d->decodes++;
    d->busy = 1;

    Py_BEGIN_ALLOW_THREADS;
    err = ff.new_packet(d->packet, (int)data.len);
    if (err < 0) {
        code = 1, ea = err;
    } else {
        memcpy(((PacketHead *)d->packet)->data, data.buf, (size_t)data.len);
        err = ff.send_packet(d->ctx, d->packet);
        ff.packet_unref(d->packet);
        if (err < 0) code = 1, ea = err;
    }
    while (!code) {
        err = ff.receive_frame(d->ctx, d->frame);
        if (err == ERROR_EAGAIN || err == ERROR_EOF) break;
        if (err < 0) {
            code = 1, ea = err;
            break;
        }
        FrameHead *f = (FrameHead *)d->frame;
        Py_ssize_t k = frames++;
        if (f->format != SAMPLE_FMT_FLTP) {
            code = 3, ea = (long)k, eb = f->format;
        } else if (f->nb_samples != SAMPLES_PER_FRAME) {
            code = 4, ea = (long)k, eb = f->nb_samples;
        } else if (f->extended_data != f->data || f->linesize[0] < SAMPLES_PER_FRAME * 4) {
            code = 7, ea = (long)k, eb = f->linesize[0];
        } else {
            Py_ssize_t planes = 0;
            while (planes < NUM_DATA_POINTERS && f->data[planes]) planes++;
            if (planes != coded) {
                code = 5, ea = (long)k, eb = (long)planes;
            } else if (k >= preroll && frames <= num_frames) {
                Py_ssize_t a = pos < 0 ? -pos : 0;
                Py_ssize_t b = total - pos < SAMPLES_PER_FRAME ? total - pos : SAMPLES_PER_FRAME;
                if (b > a) {
                    for (Py_ssize_t c = 0; c < channels; c++)
                        memcpy(base + c * row_stride + (pos + a) * 4, f->data[c] + a * 4, (size_t)(b - a) * 4);
                }
                pos += SAMPLES_PER_FRAME;
            }
        }
        ff.frame_unref(d->frame);
    }
    Py_END_ALLOW_THREADS;
    d->busy = 0;

    PyBuffer_Release(&out);
    PyBuffer_Release(&data);
    if (!code && frames != num_frames) code = 2, ea = (long)frames, eb = (long)num_frames;
    if (!code && pos < total) code = 6, ea = (long)(pos > 0 ? pos : 0), eb = (long)total;
    return Py_BuildValue("(lll)", code, ea, eb);
}

static PyMethodDef Decoder_methods[] = {
    {"flush_buffers", (PyCFunction)Decoder_flush, METH_NOARGS, "Forget the frames before (avcodec_flush_buffers)."},
    {"decode_into", (PyCFunction)Decoder_decode_into, METH_VARARGS, "Decode a run of ADTS frames into a window."},
    {"decodes", (PyCFunction)Decoder_decodes, METH_NOARGS, "decode_into calls since it opened."},
    {"seed_offsets", (PyCFunction)Decoder_seed_offsets, METH_NOARGS, "Where the private context holds the seed."},
    {"noise_state", (PyCFunction)Decoder_noise_state, METH_VARARGS, "The 32-bit value at an offset."},
    {"reset_noise", (PyCFunction)Decoder_reset_noise, METH_VARARGS, "flush_buffers and the seed at an offset."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject DecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "aacdata.codecs._fastaac.Decoder",
    .tp_basicsize = sizeof(Decoder),
    .tp_dealloc = (destructor)Decoder_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "An FFmpeg AAC decoder (1 thread) that decodes a run of ADTS frames into a window.",
    .tp_methods = Decoder_methods,
    .tp_new = Decoder_new,
};

/* CRC-32 as zlib computes it (reflected polynomial 0xEDB88320), eight bytes a step. */
static uint32_t crc_table[8][256];

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++) crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xFF];
}

static uint32_t crc32_of(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    while (n >= 8) {
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        c = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^ crc_table[5][(lo >> 16) & 0xFF] ^
            crc_table[4][lo >> 24] ^ crc_table[3][p[4]] ^ crc_table[2][p[5]] ^ crc_table[1][p[6]] ^
            crc_table[0][p[7]];
        p += 8, n -= 8;
    }
    while (n--) c = crc_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* first_bad_frame(data, bounds, expected) -> (k, crc) of the first frame whose CRC-32 is not
 * expected[k] (frame k: data[bounds[k] - bounds[0]:bounds[k + 1] - bounds[0]]; bounds int64,
 * expected uint32, both 1-D contiguous), or (-1, 0) when all match. */
static PyObject *first_bad_frame(PyObject *Py_UNUSED(self), PyObject *args) {
    Py_buffer data, bounds, expected;
    if (!PyArg_ParseTuple(args, "y*y*y*", &data, &bounds, &expected)) return NULL;
    long k_bad = -1;
    uint32_t got = 0;
    const char *problem = NULL;
    Py_ssize_t n = expected.len / 4;
    if (bounds.len != (n + 1) * 8 || expected.len % 4) {
        problem = "bounds must hold one int64 more than expected holds uint32";
    } else {
        /* memcpy: a y* buffer (a memoryview slice) need not be aligned */
        const char *b = (const char *)bounds.buf, *want = (const char *)expected.buf;
        Py_BEGIN_ALLOW_THREADS;
        int64_t b0, bk, bk1;
        uint32_t wk;
        memcpy(&b0, b, 8);
        for (Py_ssize_t k = 0; k < n; k++) {
            memcpy(&bk, b + 8 * k, 8), memcpy(&bk1, b + 8 * (k + 1), 8), memcpy(&wk, want + 4 * k, 4);
            /* in unsigned arithmetic: no signed overflow on absurd bounds */
            uint64_t a = (uint64_t)bk - (uint64_t)b0, e = (uint64_t)bk1 - (uint64_t)b0;
            if (bk < b0 || bk1 < bk || e > (uint64_t)data.len) {
                problem = "bounds lie outside data";
                break;
            }
            got = crc32_of((const unsigned char *)data.buf + a, (size_t)(e - a));
            if (got != wk) {
                k_bad = (long)k;
                break;
            }
        }
        Py_END_ALLOW_THREADS;
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&bounds);
    PyBuffer_Release(&expected);
    if (problem) {
        PyErr_SetString(PyExc_ValueError, problem);
        return NULL;
    }
    return Py_BuildValue("(lk)", k_bad, k_bad < 0 ? 0ul : (unsigned long)got);
}

static PyMethodDef module_methods[] = {
    {"first_bad_frame", first_bad_frame, METH_VARARGS, "The first frame failing its CRC-32, or (-1, 0)."},
    {"init", init, METH_VARARGS, "Hand over the addresses of the FFmpeg functions the decoder calls."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastaac", "AAC windows decoded in one call through PyAV's FFmpeg.", -1, module_methods,
};

PyMODINIT_FUNC PyInit__fastaac(void) {
    if (PyType_Ready(&DecoderType) < 0) return NULL;
    crc_init();
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddIntConstant(m, "VERSION", FASTAAC_VERSION) < 0 ||
        PyModule_AddIntConstant(m, "NOISE_SEED", (long)NOISE_SEED) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&DecoderType);
    if (PyModule_AddObject(m, "Decoder", (PyObject *)&DecoderType) < 0) {
        Py_DECREF(&DecoderType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
