"""The experiment log as TensorBoard event files (``tensorboard --logdir <run>``), through tensorboardX.

PPO's learning curve (``scripts.studies.train_ppo``: every metric per update) and each host policy's learning log
(``experiment.runs``: reward, decisions/s and its counters per episode) are written beside their CSVs. A few
scalars per update or episode: cheap enough to be always on.
"""

from __future__ import annotations

import math
import os


class EventLog:
    """Scalars by step into ``logdir`` (created); use as a context manager or call ``close``."""

    def __init__(self, logdir: str):
        from tensorboardX import SummaryWriter
        os.makedirs(logdir, exist_ok=True)
        self.writer = SummaryWriter(logdir=logdir, flush_secs=30)

    def scalars(self, step: int, values: dict, prefix: str = "") -> None:
        """Every finite number of ``values`` as ``prefix/name`` at ``step``; other entries are skipped."""
        for name, v in values.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                self.writer.add_scalar(f"{prefix}/{name}" if prefix else name, float(v), int(step))

    def close(self) -> None:
        self.writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} of every event file under ``logdir`` (for tests and quick looks)."""
    import struct

    from tensorboardX.proto import event_pb2
    out: dict[str, list[tuple[int, float]]] = {}
    for name in sorted(os.listdir(logdir)):
        if not name.startswith("events.out.tfevents"):
            continue
        with open(os.path.join(logdir, name), "rb") as f:
            data = f.read()
        i = 0
        while i + 12 <= len(data):                       # TFRecord: u64 length, u32 crc, payload, u32 crc
            n = struct.unpack("<Q", data[i:i + 8])[0]
            ev = event_pb2.Event.FromString(data[i + 12:i + 12 + n])
            i += 12 + n + 4
            for v in ev.summary.value:
                out.setdefault(v.tag, []).append((int(ev.step), float(v.simple_value)))
    return out
