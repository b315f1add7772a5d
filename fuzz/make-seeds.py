#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target from the project's own examples: the
events of docs/events.md and docs/intake.md, the intake fixtures of
edge-agent/tests/fixtures/intake/, buffer segments framed as the log writes them,
blobs in the processor's formats, and request bodies compressed with gzip (Python's
module) and zstd (the `zstd` command, as a client's library would). Run from the
repository root; the output is committed (fuzz/seeds/<target>/):
`python3 fuzz/make-seeds.py`."""
import gzip, json, os, re, struct, subprocess, sys

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

# Body: a mode byte (bit 0: zstd, bit 1: batch_too_large, bit 2: the target compresses
# the rest itself), the bound `max_out` in three bytes, then the body.
def body_head(mode, max_out):
    return bytes([mode]) + max_out.to_bytes(3, "little")


def zstd_cli(data, *flags):
    return subprocess.run(["zstd", "-q", "-c", *flags], input=data, stdout=subprocess.PIPE, check=True).stdout


GZIP, ZSTD, BATCH, PLAIN = 0, 1, 2, 4
ndjson = ("\n".join(untyped) + "\n").encode()
one_event = untyped[0].encode()
segment = open(os.path.join(fixtures, "segment-batch-analytics-js.json"), "rb").read()
MiB = 1 << 20
write("body", "gzip-batch", body_head(GZIP | BATCH, MiB) + gzip.compress(ndjson, mtime=0))
write("body", "gzip-event", body_head(GZIP, 64 << 10) + gzip.compress(one_event, mtime=0))
write("body", "gzip-batch-over-bound", body_head(GZIP | BATCH, 100) + gzip.compress(ndjson, mtime=0))
write("body", "gzip-two-members", body_head(GZIP | BATCH, MiB) + gzip.compress(ndjson[:200], mtime=0) + gzip.compress(ndjson[200:], mtime=0))
write("body", "gzip-segment-batch", body_head(GZIP | BATCH, MiB) + gzip.compress(segment, mtime=0))
write("body", "zstd-batch", body_head(ZSTD | BATCH, MiB) + zstd_cli(ndjson, "-3"))
write("body", "zstd-event-no-checksum", body_head(ZSTD, 64 << 10) + zstd_cli(one_event, "-19", "--no-check"))
write("body", "zstd-segment-batch-sized", body_head(ZSTD | BATCH, MiB) + zstd_cli(segment, "-1", f"--stream-size={len(segment)}"))
# Frames written here: a header declaring a 128 MiB window and no content size, one
# empty raw block (refused: window_too_large); and 2 MiB of zeros as RLE blocks in an
# 8 MiB window (a bomb: stops at the bound).
zstd_magic = bytes([0x28, 0xB5, 0x2F, 0xFD])
write("body", "zstd-window-128mib", body_head(ZSTD | BATCH, MiB) + zstd_magic + bytes([0x00, (27 - 10) << 3, 0x01, 0x00, 0x00]))
rle = lambda last: (1 | (1 << 1) | ((128 << 10) << 3) if last else (1 << 1) | ((128 << 10) << 3)).to_bytes(3, "little") + b"\x00"
write("body", "zstd-rle-bomb", body_head(ZSTD | BATCH, MiB) + zstd_magic + bytes([0x00, (23 - 10) << 3]) + b"".join(rle(i == 15) for i in range(16)))
# The same 128 MiB window in a frame naming a dictionary (zstd reads the dictionary id
# first: a dictionary mismatch, 400), and in a frame declaring 256 bytes of content,
# decoded in one pass into the output without a window (accepted).
write("body", "zstd-window-128mib-dictionary", body_head(ZSTD | BATCH, MiB) + zstd_magic + bytes([0x01, (27 - 10) << 3, 0x07, 0x01, 0x00, 0x00]))
raw_256 = (1 | (256 << 3)).to_bytes(3, "little") + ndjson[:256]
write("body", "zstd-window-128mib-one-pass", body_head(ZSTD | BATCH, MiB) + zstd_magic + bytes([0x40, (27 - 10) << 3, 0x00, 0x00]) + raw_256)
write("body", "round-trip-gzip", body_head(PLAIN | GZIP | (6 << 3), MiB) + ndjson)
write("body", "round-trip-zstd", body_head(PLAIN | ZSTD | (4 << 3), MiB) + segment)
write("body", "round-trip-zstd-over-bound", body_head(PLAIN | ZSTD | BATCH, 1000) + segment)

# Config: a mode byte (even: the agent's file, odd: ingest-core's), then the TOML text:
# the deployment examples, and the docs' blocks (ingest-core's sections are the agent's
# too, so they seed both).
def toml_blocks(path):
    text = open(os.path.join(root, path)).read()
    return re.findall(r"```toml\n(.*?)```", text, re.S)


AGENT, INGEST = 0, 1
for path in ["deploy/docker/edge-agent.toml", "deploy/k8s/base/agent.toml"]:
    name = path.replace("/", "-")[: -len(".toml")]
    write("config", name, bytes([AGENT]) + open(os.path.join(root, path), "rb").read())
for i, block in enumerate(toml_blocks("docs/configuration.md")):
    write("config", f"docs-configuration-{i}-ingest", bytes([INGEST]) + block.encode())
    write("config", f"docs-configuration-{i}-agent", bytes([AGENT]) + block.encode())
for i, block in enumerate(toml_blocks("docs/edge-agent.md")):
    write("config", f"docs-edge-agent-{i}", bytes([AGENT]) + block.encode())
avro_block = toml_blocks("docs/avro.md")[0]
write("config", "docs-avro", bytes([AGENT]) + avro_block.encode())
# Every secret the agent masks at once: the docs' SASL password, API keys, and the
# registry's URL given a user and password.
secrets = (
    toml_blocks("docs/configuration.md")[0]
    + toml_blocks("docs/edge-agent.md")[0]
    + avro_block.replace("http://registry", "http://ingest:s3cret@registry")
)
write("config", "secrets-agent", bytes([AGENT]) + secrets.encode())
