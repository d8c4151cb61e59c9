#!/usr/bin/env python3
"""Reference side of the export crate's parity tests (run by `cargo test -p ctiforge-export
-- --include-ignored` with CTIFORGE_GGUF_PYTHON from ci/setup-gguf.sh).

Subcommands (all binary arrays are little-endian; f32 files are raw float32):
  quantize   --backend ggml|gguf TYPE N_PER_ROW IN.f32 OUT.bin
             ggml: ggml_quantize_chunk (no imatrix) from llama-cpp-python's libggml-base;
             gguf: gguf.quants.quantize (gguf-py).
  dequantize --backend ggml|gguf TYPE IN.bin OUT.f32
  read       FILE.gguf OUT.json   dump a GGUF file with gguf.GGUFReader: metadata (typed),
             tensor infos, and each tensor's values dequantized by gguf-py.
  write      FILE.gguf            write a GGUF file with gguf.GGUFWriter covering every
             metadata value type, for the Rust reader to parse.
"""
import argparse
import ctypes
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT

_GGML = None


def ggml():
    """Loads libggml-base from the llama-cpp-python install and declares the two calls."""
    global _GGML
    if _GGML is None:
        import llama_cpp  # noqa: F401  (only for its install location)

        lib_dir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
        names = [n for n in os.listdir(lib_dir) if n.startswith("libggml-base")]
        if not names:
            sys.exit(f"gguf_reference: no libggml-base in {lib_dir}")
        lib = ctypes.CDLL(os.path.join(lib_dir, sorted(names)[0]))
        lib.ggml_quantize_chunk.restype = ctypes.c_size_t
        lib.ggml_quantize_chunk.argtypes = [
            ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
            ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
        ]

        class Traits(ctypes.Structure):
            _fields_ = [
                ("type_name", ctypes.c_char_p),
                ("blck_size", ctypes.c_int64),
                ("blck_size_interleave", ctypes.c_int64),
                ("type_size", ctypes.c_size_t),
                ("is_quantized", ctypes.c_bool),
                ("to_float", ctypes.c_void_p),
                ("from_float_ref", ctypes.c_void_p),
            ]

        lib.ggml_get_type_traits.restype = ctypes.POINTER(Traits)
        lib.ggml_get_type_traits.argtypes = [ctypes.c_int]
        _GGML = lib
    return _GGML


def qtype(name):
    try:
        return QT[name]
    except KeyError:
        sys.exit(f"gguf_reference: unknown type {name!r}")


def quantize(args):
    t = qtype(args.type)
    x = np.fromfile(args.input, dtype="<f4")
    n = args.n_per_row
    if x.size % n:
        sys.exit(f"gguf_reference: {x.size} values do not split into rows of {n}")
    rows = x.reshape(-1, n)
    if args.backend == "gguf":
        out = gguf.quants.quantize(rows, t)
        out = np.ascontiguousarray(out).view(np.uint8)
    else:
        lib = ggml()
        block, size = gguf.GGML_QUANT_SIZES[t]
        out = np.zeros(rows.shape[0] * (n // block) * size, dtype=np.uint8)
        src = np.ascontiguousarray(rows, dtype=np.float32)
        got = lib.ggml_quantize_chunk(int(t), src.ctypes.data, out.ctypes.data, 0,
                                      rows.shape[0], n, None)
        if got != out.size:
            sys.exit(f"gguf_reference: ggml wrote {got} bytes, expected {out.size}")
    out.tofile(args.output)


def dequantize(args):
    t = qtype(args.type)
    data = np.fromfile(args.input, dtype=np.uint8)
    block, size = gguf.GGML_QUANT_SIZES[t]
    n = data.size // size * block
    if args.backend == "gguf":
        y = gguf.quants.dequantize(data, t).astype("<f4").reshape(-1)
    else:
        lib = ggml()
        traits = lib.ggml_get_type_traits(int(t)).contents
        if not traits.to_float:  # F32 has no converter: it is stored as is
            data.view("<f4").tofile(args.output)
            return
        fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)(
            traits.to_float)
        y = np.zeros(n, dtype=np.float32)
        fn(data.ctypes.data, y.ctypes.data, n)
    y.tofile(args.output)


def field_value(field):
    """A GGUFReader field as JSON: {"type": <gguf value type name>, "value": ...}."""
    types = [t.name for t in field.types]
    return {"types": types, "value": field.contents()}


def read(args):
    r = gguf.GGUFReader(args.file)
    out = {"metadata": {}, "tensors": []}
    for name, field in r.fields.items():
        if name.startswith("GGUF."):
            continue
        out["metadata"][name] = field_value(field)
    for t in r.tensors:
        values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64).reshape(-1)
        out["tensors"].append({
            "name": t.name,
            "dims": [int(d) for d in t.shape],
            "type": t.tensor_type.name,
            "offset": int(t.data_offset),
            "n_bytes": int(t.n_bytes),
            "values": values.tolist(),
        })
    with open(args.output, "w") as f:
        json.dump(out, f)


def write(args):
    w = gguf.GGUFWriter(args.file, arch="llama")
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4000000000)
    w.add_int32("t.i32", -2000000000)
    w.add_float32("t.f32", 1.5)
    w.add_uint64("t.u64", 2**63 + 5)
    w.add_int64("t.i64", -(2**62))
    w.add_float64("t.f64", 2.25)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "héllo ✓")
    w.add_array("t.arr_str", ["a", "bc", ""])
    w.add_array("t.arr_i32", [1, -2, 3])
    w.add_array("t.arr_nested", [[1, 2], [3]])
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4, 64)).astype(np.float32)
    w.add_tensor("a.weight", a)
    b = rng.standard_normal((2, 32)).astype(np.float32)
    w.add_tensor("b.weight", gguf.quants.quantize(b, QT.Q8_0), raw_dtype=QT.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    np.concatenate([a.reshape(-1), b.reshape(-1)]).astype("<f4").tofile(args.file + ".f32")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quantize")
    q.add_argument("--backend", choices=["ggml", "gguf"], required=True)
    q.add_argument("type")
    q.add_argument("n_per_row", type=int)
    q.add_argument("input")
    q.add_argument("output")
    d = sub.add_parser("dequantize")
    d.add_argument("--backend", choices=["ggml", "gguf"], required=True)
    d.add_argument("type")
    d.add_argument("input")
    d.add_argument("output")
    r = sub.add_parser("read")
    r.add_argument("file")
    r.add_argument("output")
    w = sub.add_parser("write")
    w.add_argument("file")
    args = p.parse_args()
    {"quantize": quantize, "dequantize": dequantize, "read": read, "write": write}[args.cmd](args)


if __name__ == "__main__":
    main()
