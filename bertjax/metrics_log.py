"""Where metrics go: a console progress bar, TensorBoard event files and W/metrics.jsonl.

Only the primary process writes. metrics.jsonl holds one JSON object per logged step
({"step": 100, "train/loss": ..., "perf/mfu": ...}); evaluations are their own lines with
"eval/..." keys. On resume, lines for steps beyond the checkpoint are dropped so the file
stays a clean record of one trajectory, and TensorBoard is told to purge them too.
"""

from __future__ import annotations

import json
import logging
import os

import jax
import tqdm


class MetricsLog:
    def __init__(self, workdir: str, total_steps: int, start_step: int = 0,
                 progress: bool = True):
        self.enabled = jax.process_index() == 0
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._writer = None
        self._bar = None
        if not self.enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        self._truncate_after(start_step)
        try:
            from tensorboardX import SummaryWriter
            # purge_step makes TensorBoard hide what an earlier attempt logged after the
            # checkpoint (steps > start_step; all of them for a restart from scratch), as
            # _truncate_after does for metrics.jsonl: otherwise those steps show twice.
            self._writer = SummaryWriter(os.path.join(workdir, "tensorboard"),
                                         purge_step=start_step + 1)
        except Exception as e:  # TensorBoard is a convenience; never a reason to stop training
            logging.warning("TensorBoard disabled: %s", e)
        if progress:
            self._bar = tqdm.tqdm(total=total_steps, initial=start_step, unit="step",
                                  dynamic_ncols=True, mininterval=1.0)

    def _truncate_after(self, step: int) -> None:
        if not os.path.exists(self.path):
            return
        with open(self.path) as f:
            lines = [line for line in f if line.strip() and json.loads(line).get("step", 0) <= step]
        with open(self.path, "w") as f:
            f.writelines(lines)

    def advance(self, n: int = 1) -> None:
        """Moves the progress bar (host-side only: no device sync)."""
        if self._bar is not None:
            self._bar.update(n)

    def write(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for k, v in scalars.items():
                self._writer.add_scalar(k, float(v), int(step))
            self._writer.flush()
        if self._bar is not None:
            shown = {k.split("/", 1)[1]: v for k, v in scalars.items()
                     if k in ("train/loss", "perf/tokens_per_sec", "eval/loss")}
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=True)

    def print(self, message: str) -> None:
        """A log line that does not tear the progress bar."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(message)
        else:
            print(message, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._writer is not None:
            self._writer.close()


def eval_metrics_at(workdir: str, step: int) -> dict[str, float]:
    """The eval/ metrics logged at `step` in W/metrics.jsonl (names without "eval/"); {} if none.

    How a driver reads a finished run's scores: a rerun of a finished run resumes, trains nothing
    and evaluates nothing, so its summary["eval"] is empty but this record is not."""
    found = {}
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return found
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            if row.get("step") == step:
                found.update({k[len("eval/"):]: v for k, v in row.items()
                              if k.startswith("eval/")})
    return found
