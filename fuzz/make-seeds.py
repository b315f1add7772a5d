#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target from the project's own examples: the
events of docs/events.md and docs/intake.md, the intake fixtures of
edge-agent/tests/fixtures/intake/, buffer segments framed as the log writes them, and
blobs in the processor's formats. Run from the repository root; the output is
committed (fuzz/seeds/<target>/): `python3 fuzz/make-seeds.py`."""
import json, os, re, struct, sys

try:
    import crc32c as _crc  # optional; a pure-Python CRC32C below otherwise
    crc32c = _crc.crc32c
except ImportError:
    _table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        _table.append(c)

    def crc32c(data, crc=0):
        crc ^= 0xFFFFFFFF
        for b in data:
            crc = _table[(crc ^ b) & 0xFF] ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF

root = os.getcwd()
out = os.path.join(root, "fuzz", "seeds")


def write(target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def blocks(path):
    text = open(os.path.join(root, path)).read()
    return re.findall(r"```json\n(.*?)```", text, re.S)


KINDS = ["product_view", "cart", "purchase", "search"]
# docs/events.md: one block per type, in EventKind::ALL order.
events = []
for kind, block in zip(KINDS, blocks("docs/events.md")):
    # A block holds one event per line, or one event over several lines.
    try:
        parsed = [json.loads(block)]
    except json.JSONDecodeError:
        parsed = [json.loads(line) for line in block.splitlines() if line.strip()]
    for ev in parsed:
        events.append((kind, ev))

validate_n = 0
for kind, ev in events:
    mode = 1 + KINDS.index(kind)
    raw = json.dumps(ev, separators=(",", ":")).encode()
    write("validate", f"typed-{validate_n:02}", bytes([mode]) + raw)
    typed = dict(ev, type=kind)
    write("validate", f"untyped-{validate_n:02}", bytes([0]) + json.dumps(typed).encode())
    validate_n += 1
# The native events of docs/intake.md (what the mappers produce).
for i, block in enumerate(blocks("docs/intake.md")):
    ev = json.loads(block)
    if "action" in ev:
        write("validate", f"intake-{i}", bytes([2]) + block.encode())
untyped = [json.dumps(dict(ev, type=k)) for k, ev in events]
write("validate", "batch-ndjson", bytes([5]) + "\n".join(untyped).encode() + b"\n")
write("validate", "batch-array", bytes([5]) + ("[" + ",\n ".join(untyped) + "]").encode())
write("validate", "batch-empty-array", bytes([5]) + b"[ ]")

# Buffer: structured records (flags bit 0) and the same frames raw.
def frame(seq, payload):
    crc = crc32c(payload, crc32c(struct.pack("<Q", seq)))
    return struct.pack("<IIQ", len(payload), crc, seq) + payload


payloads = [json.dumps(dict(ev, type=k)).encode()[:255] for k, ev in events]
structured = b"".join(bytes([len(p)]) + p for p in payloads)
header = lambda flags, seq, wm, at, xor: bytes([flags]) + struct.pack("<HHHB", seq, wm, at, xor)
write("buffer", "structured-one-segment", header(1, 0, 0, 0, 0) + structured)
write("buffer", "structured-two-segments-ledger", header(1 | 2 | 4, 7, 9, 3, 0) + structured)
write("buffer", "structured-damaged", header(1 | 2, 0, 0, 2, 0x5A) + structured)
raw = b"".join(frame(100 + i, p) for i, p in enumerate(payloads))
write("buffer", "raw-segment", header(0, 100, 0, 0, 0) + raw)
write("buffer", "raw-torn-tail", header(4, 100, 101, 0, 0) + raw[:-7])
write("buffer", "raw-two-segments", header(2, 100, 0, len(frame(100, payloads[0])), 1) + raw)

# Processor blobs: a dedup_log row (version 1, minute i64, count u32, ids u128) and
# structured inputs for the round trips.
dedup = bytes([1]) + struct.pack("<qI", 29_000_000 * 60, 2) + (7).to_bytes(16, "little") + (9).to_bytes(16, "little")
write("processor_blobs", "dedup-row", bytes([0]) + dedup)
write("processor_blobs", "round-trip", bytes([1]) + bytes(range(0, 64)))
write("processor_blobs", "pair-row-not-zstd", bytes([0, 1]) + b"\x28\xb5\x2f\xfd")

# Intake: the SDK fixtures and the docs' requests.
fixtures = os.path.join(root, "edge-agent", "tests", "fixtures", "intake")
for name in sorted(os.listdir(fixtures)):
    if not name.endswith(".json"):
        continue
    body = open(os.path.join(fixtures, name), "rb").read()
    mode = 7 if name.startswith("ga4") else 6 if "batch" in name else 0
    write("intake", name[:-5], bytes([mode]) + body)
for i, block in enumerate(blocks("docs/intake.md")):
    ev = json.loads(block)
    mode = 6 if "batch" in ev else 7 if "client_id" in ev and "events" in ev else None
    if mode is not None:
        write("intake", f"docs-intake-{i}", bytes([mode]) + block.encode())
