#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/)
from the known-answer vectors in tests/data/vectors and a few literal texts.
Deterministic; run by hand after changing a seed (the files are committed),
never by the tests:  python3 tests/fuzz/make_corpus.py

Seeds that the targets re-sign (fuzz_batch_signed, fuzz_frames) carry the
vector key's feed, which is the targets' fixed key, so they reach the deepest
checks; the others keep the vector signatures, or break one thing each."""

import os
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
VEC = os.path.join(HERE, "..", "data", "vectors")
OUT = os.path.join(HERE, "corpus")


def vec(name):
    with open(os.path.join(VEC, name), "rb") as f:
        return f.read()


KEY = vec("key.txt").decode().split("public ")[1].strip()
ENTRY1, ENTRY2, CONTENT1 = vec("entry1.json"), vec("entry2.json"), vec("content1.json")
SIG1 = bytes.fromhex(vec("entry1.sig.hex").decode().strip())
SIG2 = bytes.fromhex(vec("entry2.sig.hex").decode().strip())
HASH2 = vec("entry2.hash.hex").decode().strip()
BATCH2 = vec("batch2.bin")
CREATED = "2026-11-29T02:16:00.000Z"


def u32(n):
    return n.to_bytes(4, "big")


def frame(entry, sig, content=b""):
    return u32(len(entry)) + entry + sig + u32(len(content)) + content


FRAMES = frame(ENTRY1, SIG1, CONTENT1) + frame(ENTRY2, SIG2)


def header(purpose="push", feed=True, frm=1, to=2, count=2, raw_len=None, raw=FRAMES):
    if raw_len is None:
        raw_len = len(raw)
    if feed:
        rng = '"feed":"%s","from":%d,"to":%d,"to_hash":"%s"' % (KEY, frm, to, HASH2)
    else:
        rng = '"feed":null,"from":null,"to":null,"to_hash":null'
    return ('{"purpose":"%s",%s,"count":%d,"raw_len":%d,"created":"%s"}' %
            (purpose, rng, count, raw_len, CREATED)).encode()


def envelope(hdr, payload, flags=0, sig=bytes(64)):
    """An envelope with a placeholder signature (the signed targets re-sign)."""
    return (b"FSB1" + bytes([1, flags, 0, 0]) + bytes.fromhex(KEY) + u32(len(hdr)) + hdr +
            u32(len(payload)) + payload + sig)


def with_u32(b, off, n):
    return b[:off] + u32(n) + b[off + 4:]


HL = int.from_bytes(BATCH2[40:44], "big")

SEEDS = {
    "fuzz_batch": {
        "batch2.bin": BATCH2,
        "truncated.bin": BATCH2[:-1],
        "header-len-plus-one.bin": with_u32(BATCH2, 40, HL + 1),
        "payload-len-huge.bin": with_u32(BATCH2, 44 + HL, 0xFFFFFFFF),
        "version-2.bin": BATCH2[:4] + b"\x02" + BATCH2[5:],
        "sealed-flag.bin": BATCH2[:5] + b"\x01" + BATCH2[6:],
        "sig-flipped.bin": BATCH2[:-1] + bytes([BATCH2[-1] ^ 1]),
        "magic-only.bin": b"FSB1",
        "cut-in-header.bin": BATCH2[:200],
    },
    "fuzz_batch_signed": {
        "batch2.bin": BATCH2,
        "stored.bin": envelope(header(), zlib.compress(FRAMES, 0)),
        "pull-multi-feed.bin": envelope(header("pull", feed=False), zlib.compress(FRAMES, 1)),
        "bundle.bin": envelope(header("bundle"), zlib.compress(FRAMES, 1)),
        "count-3.bin": envelope(header(count=3, to=3), zlib.compress(FRAMES, 1)),
        "raw-len-short.bin": envelope(header(raw_len=len(FRAMES) - 1), zlib.compress(FRAMES, 1)),
        "trailing-bytes.bin": envelope(header(), zlib.compress(FRAMES, 1) + b"\x00"),
        # 2 MiB of zeros claiming 1 MiB: a small decompression bomb.
        "bomb.bin": envelope(header(raw_len=1 << 20), zlib.compress(bytes(2 << 20), 9)),
        "empty-payload.bin": envelope(header(count=0, raw_len=0), zlib.compress(b"", 1)),
    },
    "fuzz_frames": {
        "frames2.bin": FRAMES,
        "frame1.bin": frame(ENTRY1, SIG1, CONTENT1),
        "frame2.bin": frame(ENTRY2, SIG2),
        "frame1-redacted.bin": frame(ENTRY1, SIG1),
        "frame2-with-content.bin": frame(ENTRY2, SIG2, b"{}"),
        "entry-len-zero.bin": u32(0) + SIG1 + u32(0),
        "truncated.bin": FRAMES[:-10],
        "content-cut.bin": frame(ENTRY1, SIG1, CONTENT1)[:-10],
    },
    "fuzz_entry": {
        "entry1.json": ENTRY1,
        "entry2.json": ENTRY2,
        "sealed.json": ENTRY1.replace(b'"enc":"json"', b'"enc":"sealed"'),
        "max-seq.json": ENTRY1.replace(b'"seq":1,"prev":null',
                                       b'"seq":9007199254740991,"prev":"' + HASH2.encode() + b'"'),
        "escaped.json": ENTRY1.replace(b'"op":"put"', b'"op":"p\\u0075t"'),
    },
    "fuzz_content": {
        "content1.json": CONTENT1,
        "minimal.json": b'{"kind":"note","observed_at":"2026-11-28T09:30:00Z"}',
        "gps.json": (b'{"kind":"observation","observed_at":"2026-11-28T09:30:00-03:30",'
                     b'"site":{"lat":-89.999999,"lon":180,"acc_m":0.5}}'),
        "tiny-numbers.json": (b'{"kind":"x","observed_at":"2026-01-01T00:00:00.123456+14:00",'
                              b'"site":{"lat":1e-7,"lon":-5e-324,"acc_m":1.7976931348623157e308}}'),
        "fields.json": (b'{"kind":"survey","observed_at":"2026-11-28T09:30:00Z","fields":'
                        b'{"a":"1","b.c":"\\u00e9\\ud83d\\ude00","z-9":"\\n\\t"}}'),
        # Coordinates that need all 17 significant digits to read back.
        "17-digits.json": (b'{"kind":"x","observed_at":"2026-11-28T09:30:00Z","site":'
                           b'{"lat":0.30000000000000004,"lon":117.30900000000001,"acc_m":8}}'),
    },
    "fuzz_auth": {
        "header.txt": ("Fieldsync feed=%s, ts=1764382560, nonce=%s, sig=%s" %
                       (KEY, "0f" * 16, SIG1.hex())).encode(),
        "reordered.txt": ("Fieldsync sig=%s, nonce=%s, feed=%s, ts=0" %
                          (SIG2.hex(), "a0" * 16, KEY)).encode(),
        "token.txt": ("fs1_%s_%s" % (KEY[:16], "5e" * 32)).encode(),
    },
    "fuzz_bundle": {
        # The vector batch as a one-batch file, twice in a row, cut short, and
        # followed by a stray byte.
        "batch2.fsb": BATCH2,
        "batch2-twice.fsb": BATCH2 + BATCH2,
        "batch2-cut.fsb": BATCH2[:len(BATCH2) // 2],
        "batch2-trailing.fsb": BATCH2 + b"x",
    },
    "fuzz_heartbeat": {
        # The vector's line as carried (with its newline, which the parser
        # refuses: callers strip it), without it, and with a byte changed.
        "heartbeat2.txt": vec("heartbeat2.txt"),
        "heartbeat2-bare.txt": vec("heartbeat2.txt").strip(),
        "heartbeat2-changed.txt": vec("heartbeat2.txt").strip()[:60] + b"B" +
                                  vec("heartbeat2.txt").strip()[61:],
        "short.txt": b"AXm1Vi6P5lT5QHixEuipi6eQH4U6",
    },
    "fuzz_enroll": {
        "enroll.json": ('{"token":"fs1_%s_%s","feed":"%s","name":"Ye T. laptop","sig":"%s"}' %
                        (KEY[:16], "5e" * 32, KEY, SIG1.hex())).encode(),
        "unicode-name.json": ('{"name":"\\u5929\\u6d25 \u5b9d\u577b","sig":"%s","feed":"%s",'
                              '"token":"fs1_%s_%s"}' %
                              (SIG2.hex(), KEY, "0" * 16, "f" * 64)).encode(),
        "quoted-name.json": ('{"token":"fs1_%s_%s","feed":"%s","name":"Ye \\"T.\\" \\\\ laptop",'
                             '"sig":"%s"}' % (KEY[:16], "5e" * 32, KEY, SIG1.hex())).encode(),
    },
    "fuzz_import_jsonl": {
        "records.jsonl": (
            b'{"kind":"interview","observed_at":"2026-04-24T09:47:00+08:00","author":"Shi X.",'
            b'"site":{"name":"Xiongan New Area, Rongcheng","region":"\xe6\xb2\xb3\xe5\x8c\x97\xe7'
            b'\x9c\x81/\xe9\x9b\x84\xe5\xae\x89\xe6\x96\xb0\xe5\x8c\xba","lat":39.0266,'
            b'"lon":115.954813,"acc_m":3},"fields":{"interviewee_role":"factory manager",'
            b'"duration_min":"92"},"note":"several young engineers still live in Beijing."}\n'
            b'\n   \n'
            b'{"id":"0193a3c4-5b6e-7f00-8a1b-2c3d4e5f6a7b","kind":"observation",'
            b'"observed_at":"2026-05-11T12:05:00Z","note":"second line\\nof a note"}\r\n'),
        "bom.jsonl": b'\xef\xbb\xbf{"kind":"note","observed_at":"2026-11-28T09:30:00Z"}',
        "content1.jsonl": CONTENT1 + b"\n",
        "short-id.jsonl": b'{"id":"0193a3c4","kind":"note","observed_at":"2026-11-28T09:30:00Z"}\n',
    },
    "fuzz_import_csv": {
        "export.csv": (
            b"id,kind,gen,observed_at,author,site,region,lat,lon,acc_m,note,attachments,feed,"
            b"conflicts,field:duration_min,field:topic\n"
            b"01a22597-df06-7089-8c55-890f527f8bac,interview,1,2026-04-24T09:47:00+08:00,Shi X.,"
            b"\"Xiongan New Area, Rongcheng\",\xe6\xb2\xb3\xe5\x8c\x97\xe7\x9c\x81,39.0266,"
            b"115.954813,3,young engineers travel daily.,," + KEY.encode() + b",,92,jobs\n"
            b"\n"
            b",interview,1,2026-11-29T04:37:21Z,Ye T.,\"Baodi, \"\"Town\"\"\",,39.717,117.309,8,"
            b"\"a \"\"quoted\"\", note\nwith a line break\",,,,,=1+2\r\n"),
        "excel.csv": (b"\xef\xbb\xbfkind,observed_at,note,field:formula\r\n"
                      b"note,2026-11-28T09:30:00Z,'-minus,'=1+2\r\n"),
        "minimal.csv": b"kind,observed_at\nnote,2026-11-28T09:30:00Z",
        "trailing-comma.csv": b"kind,observed_at,\nnote,2026-11-28T09:30:00Z,\n",
        # 33 cells, one more than the reader's first cell array holds, the
        # last one empty after a trailing comma at the very end of the file
        # (once refused as "too many columns").
        "33-cells-at-eof.csv": (b"kind,observed_at," +
                                b",".join(b"field:f%02d" % i for i in range(31)) +
                                b"\nnote,2026-11-28T09:30:00Z," + b"v," * 30),
        # The column limit: 4096 empty cells pass the reader, 4097 do not.
        "4096-cells.csv": b"," * 4095,
        "4097-cells.csv": b"," * 4096,
    },
}


def main():
    for target, seeds in SEEDS.items():
        d = os.path.join(OUT, target)
        # Seeds are written anew; regressions a fuzzer found (regress-*) stay.
        os.makedirs(d, exist_ok=True)
        for name in os.listdir(d):
            if not name.startswith("regress-"):
                os.remove(os.path.join(d, name))
        for name, data in seeds.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        print("%s: %d seeds" % (target, len(seeds)))


if __name__ == "__main__":
    main()
