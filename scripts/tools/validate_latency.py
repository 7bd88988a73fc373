"""The project's LLM server model held against published measured serving, on its own data or on a user's.

    python -m scripts.tools.validate_latency                                   # the project's data (data/serving/)
    python -m scripts.tools.validate_latency --data rows.csv --catalog specs.toml
    python -m scripts.tools.validate_latency --fit                             # also refit the shipped efficiencies
    python -m scripts.tools.validate_latency --test-data none                  # without the never-fitted test set

Data: a CSV, one measured serving configuration a row: ``source, hardware, model, n_gpus, batch, input_tokens,
output_tokens`` and any of ``measured_tokens_per_s_per_gpu`` (output tokens/s per GPU of one static batch),
``measured_batch_latency_ms`` (the whole static batch: prefill and every output token), ``measured_first_token_ms``
(time to the first token at that batch) and ``measured_ms_per_output_token`` (a decode step at that batch); an
optional ``engine`` (the engine that ran the row, empty for none); other columns (citation, note) are kept as
they are. Hardware, models and engines are looked up in a TOML of the scenario schema (``[[hardware]]`` and
``[[models]]`` tables, a model's quality may be left out; ``[[engines]]`` where rows name engines). Bad input (unknown names, a
missing or malformed column, a row with nothing measured) exits 2 naming the row and column, before any compute.

What the project books (``jaxsim.inference``: the environment's own formulas on servers derived by
``jaxsim.params.server_terms``): a static batch of B prompts of ISL tokens generating OSL tokens each is the
prefill of the B prompts together (``prefill_s``) and OSL - 1 decode steps of B sequences whose contexts grow
from ISL + 1 (``decode_steps_s``); throughput = B OSL / time / GPUs; first token = ``prefill_s``; time per output
token = the decode steps' mean.

Errors: each metric's mean absolute relative error over its rows (batch-latency rows count as throughput rows:
booked / measured throughput). Held out: each source in turn is left out, the efficiencies are refitted on the
others and the left-out source's rows are booked with that fit; ``held_out_*`` pool those errors. Every fit
(``--fit``, and each left-one-out fit) starts from the same data-free point (START), reads none of the catalog's
own values (the project's are the fit on every row), and fits the global efficiencies of ``[inference]``, each
GPU's own ``eta_compute`` / ``eta_memory`` / ``eta_prefill`` / ``eta_attention`` and each engine's own per-layer
fixed costs (``prefill_overhead_s_per_layer`` / ``step_overhead_s_per_layer`` / ``tp_sync_s_per_layer``; GPUs and
engines whose rows span fewer than two models get the others' geometric mean) by gradient descent through the
booking itself, minimising the sum over metrics of the mean absolute relative error over the rows.
``--pool-engines`` treats every row as of no engine (how ``[inference]``'s defaults are fitted). Deterministic.

Test set: ``data/serving/test.csv`` (``--test-data``) holds rows that no fit reads -- other sources, engines and
models than the fitted data's -- booked with the shipped values and reported apart (``test_*``, per source).

Writes <out>/latency_validation.csv (every row: measured, booked, error, and its held-out booking) and, with a test
set, <out>/latency_test.csv; the last
line printed is one JSON object {"bench": "latency", "n": ..., "throughput_mape": ..., "ttft_mape": ...,
"tpot_mape": ..., "tp1_throughput_mape": ..., "tp_throughput_mape": ..., "held_out_throughput_mape": ...,
"held_out_ttft_mape": ..., "test_throughput_mape": ..., ...} with the keys the data have rows for.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np

from experiment.files import write_csv
from experiment.runs import check_writable
from jaxsim import inference
from jaxsim.config import Action, Engine, Hardware, InferenceConfig, LLMModel
from jaxsim.fields import ConfigError, spec
from jaxsim.params import server_terms

DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "serving"
DEFAULT_DATA = DATA_DIR / "measured.csv"
DEFAULT_CATALOG = DATA_DIR / "catalog.toml"
DEFAULT_TEST = DATA_DIR / "test.csv"       # rows no fit reads: sources, engines and models of their own

KEYS = ("source", "hardware", "model", "n_gpus", "batch", "input_tokens", "output_tokens")
MEASURED = ("measured_tokens_per_s_per_gpu", "measured_batch_latency_ms", "measured_first_token_ms",
            "measured_ms_per_output_token")
GLOBAL = ("eta_compute", "eta_memory", "eta_prefill", "eta_attention", "prefill_overhead_s_per_layer",
          "step_overhead_s_per_layer", "tp_sync_s_per_layer")
PER_GPU = ("eta_compute", "eta_memory", "eta_prefill", "eta_attention")
PER_ENGINE = ("prefill_overhead_s_per_layer", "step_overhead_s_per_layer", "tp_sync_s_per_layer")
METRICS = ("throughput", "ttft", "tpot")


# ------------------------------------------------------------------------------------------------ input
def read_catalog(path) -> tuple[dict[str, Hardware], dict[str, LLMModel], dict[str, Engine]]:
    """Hardware, models and (optional ``[[engines]]``) engines of a TOML in the scenario schema, each validated
    as a scenario's are."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"--catalog {str(path)!r}: cannot read ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"--catalog {str(path)!r}: not valid TOML ({e})") from None
    out = []
    extra = sorted(set(doc) - {"hardware", "models", "engines"})
    if extra:
        raise ConfigError(f"--catalog {str(path)!r}: unknown table {extra[0]!r}; allowed: hardware, models, engines")
    for table, cls in (("hardware", Hardware), ("models", LLMModel), ("engines", Engine)):
        rows = doc.get(table, [] if table == "engines" else None)
        if table == "engines" and rows == []:
            out.append({})
            continue
        if not isinstance(rows, list) or not rows:
            raise ConfigError(f"--catalog {str(path)!r}: needs [[{table}]] tables")
        items = {}
        for i, r in enumerate(rows):
            p = f"{table}[{i}]"
            names = {f.name for f in dataclasses.fields(cls)}
            if not isinstance(r, dict) or "name" not in r:
                raise ConfigError(f"{p}: a table with a name is required")
            extra = sorted(set(r) - names)
            if extra:
                raise ConfigError(f"{p}.{extra[0]}: unknown field; allowed: {', '.join(sorted(names))}")
            try:
                obj = cls(**r)
            except TypeError as e:
                raise ConfigError(f"{p}: {e}") from None
            obj.validate(p, list(obj.quality)) if cls is LLMModel else obj.validate(p)
            if obj.name in items:
                raise ConfigError(f"{p}.name = {obj.name!r}: given twice")
            items[obj.name] = obj
        out.append(items)
    return out[0], out[1], out[2]


def _number(path: str, text: str, lo: float, integer: bool) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ConfigError(f"{path} = {text!r}: must be a number") from None
    if not math.isfinite(v) or v < lo or (integer and v != int(v)):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{path} = {text!r}: allowed {kind} >= {lo:g}")
    return v


def read_rows(path, hardware: dict, models: dict, engines: dict | None = None, flag: str = "--data") -> list[dict]:
    """The measured rows of a CSV, checked against the catalog: unknown names, missing or malformed columns
    and rows with nothing measured are refused naming the row (its line in the file) and the column. The
    optional column ``engine`` names a catalog ``[[engines]]`` entry (empty: an engine without data, which
    gets ``[inference]``'s fixed costs). ``flag`` names the file in messages."""
    engines = engines or {}
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [k for k in KEYS if k not in header]
            if missing:
                raise ConfigError(f"{flag} {str(path)!r}: missing column {missing[0]!r} (required: {', '.join(KEYS)})")
            if not any(k in header for k in MEASURED):
                raise ConfigError(f"{flag} {str(path)!r}: no measured column; give any of {', '.join(MEASURED)}")
            raw = list(reader)
    except OSError as e:
        raise ConfigError(f"{flag} {str(path)!r}: cannot read ({e.strerror})") from None
    n_range = spec(Action, "n_gpus")
    rows = []
    for i, r in enumerate(raw):
        where = f"{flag} {Path(path).name} line {i + 2}"
        if None in r.values() or None in r:
            raise ConfigError(f"{where}: has a different number of cells than the header")
        if r["hardware"] not in hardware:
            raise ConfigError(f"{where}, column hardware = {r['hardware']!r}: not in the catalog "
                              f"(known: {', '.join(sorted(hardware))})")
        if r["model"] not in models:
            raise ConfigError(f"{where}, column model = {r['model']!r}: not in the catalog "
                              f"(known: {', '.join(sorted(models))})")
        eng = (r.get("engine") or "").strip()
        if eng and eng not in engines:
            raise ConfigError(f"{where}, column engine = {eng!r}: not in the catalog's [[engines]] "
                              f"(known: {', '.join(sorted(engines)) or 'none'}; leave it empty for none)")
        if not r["source"].strip():
            raise ConfigError(f"{where}, column source: empty; name where the row comes from")
        row = dict(r)
        row["engine"] = eng
        for k, lo in (("n_gpus", 1), ("batch", 1), ("input_tokens", 1), ("output_tokens", 1)):
            row[k] = int(_number(f"{where}, column {k}", r[k], lo, True))
        n_range.check(f"{where}, column n_gpus", row["n_gpus"])
        got = {}
        for k in MEASURED:
            if r.get(k, "").strip():
                v = _number(f"{where}, column {k}", r[k], 0.0, False)
                if v <= 0:
                    raise ConfigError(f"{where}, column {k} = {r[k]!r}: allowed a number > 0")
                got[k] = v
        if not got:
            raise ConfigError(f"{where}: nothing measured; give any of {', '.join(MEASURED)}")
        if "measured_tokens_per_s_per_gpu" in got and "measured_batch_latency_ms" in got:
            raise ConfigError(f"{where}: give measured_tokens_per_s_per_gpu or measured_batch_latency_ms, not both")
        row["measured"] = got
        rows.append(row)
    if not rows:
        raise ConfigError(f"{flag} {str(path)!r}: no rows")
    return rows


# ------------------------------------------------------------------------------------------------ booking
@dataclasses.dataclass
class Table:
    """The rows as columns: the catalog's fields per row, and the measured values as booked metrics."""
    rows: list
    gpu: np.ndarray            # [N] index into gpus
    gpus: list
    hw: dict                   # Hardware field -> [N] column
    model: SimpleNamespace     # LLMModel fields (and n_heads) -> [N] columns
    n_gpus: np.ndarray
    batch: np.ndarray
    isl: np.ndarray
    osl: np.ndarray
    source: np.ndarray
    measured: dict             # metric -> [N] value, nan where the row has none
    eng: np.ndarray            # [N] index into engines, -1 for a row without an engine
    engines: list
    eng_cat: dict              # PER_ENGINE field -> [N] the row's engine's catalog value, nan where it has none


def table(rows, hardware: dict, models: dict, engines: dict | None = None) -> Table:
    col = lambda f: np.array([f(r) for r in rows], np.float64)    # noqa: E731
    gpus = sorted({r["hardware"] for r in rows})
    hw = {k: col(lambda r: getattr(hardware[r["hardware"]], k) or np.nan)
          for k in ("peak_flops", "mem_bw_bytes_s", "link_bw_bytes_s", "link_latency_s") + PER_GPU}
    mf = ("n_params", "n_layers", "n_kv_heads", "head_dim", "d_model", "bytes_per_weight", "bytes_per_kv",
          "bytes_per_activation", "n_heads")
    model = SimpleNamespace(**{k: col(lambda r: getattr(models[r["model"]], k)) for k in mf})
    b, osl = col(lambda r: r["batch"]), col(lambda r: r["output_tokens"])
    n = col(lambda r: r["n_gpus"])

    def m(k):
        return col(lambda r: r["measured"].get(k, np.nan))
    thr = np.where(np.isfinite(m("measured_tokens_per_s_per_gpu")), m("measured_tokens_per_s_per_gpu"),
                   b * osl / (1e-3 * m("measured_batch_latency_ms")) / n)
    engs = sorted({r["engine"] for r in rows if r.get("engine")})
    known = engines or {}
    def cat(r, k):                                   # a cost of 0 is a value; absent (None) is not
        v = getattr(known.get(r.get("engine")), k, None)
        return np.nan if v is None else v
    eng_cat = {k: col(lambda r: cat(r, k)) for k in PER_ENGINE}
    return Table(rows, np.array([gpus.index(r["hardware"]) for r in rows]), gpus, hw, model, n, b,
                 col(lambda r: r["input_tokens"]), osl, np.array([r["source"] for r in rows]),
                 {"throughput": thr, "ttft": m("measured_first_token_ms"), "tpot": m("measured_ms_per_output_token")},
                 np.array([engs.index(r["engine"]) if r.get("engine") else -1 for r in rows]), engs, eng_cat)


def _per_row(eff: dict, keys, names: list, index: np.ndarray, catalog: dict, fallback) -> dict:
    """Per-row columns of ``keys``: ``eff``'s "<name>.<key>" entry of the row's hardware or engine (``names``
    [``index``]; index -1: none), else the row's catalog value (``catalog[key]``, nan: none), else
    ``fallback``'s (the global one)."""
    cols = {}
    for k in keys:
        own = np.array([eff.get(f"{g}.{k}", np.nan) for g in names] + [np.nan])[index]
        cols[k] = np.where(np.isfinite(own), own, np.where(np.isfinite(catalog[k]), catalog[k], getattr(fallback, k)))
    return cols


def servers(t: Table, eff: dict) -> inference.ServingParams:
    """One server per row, from ``eff``: [inference] fields and, per GPU, "<gpu>.<eta>" entries, per engine
    "<engine>.<overhead>" entries (absent: the catalog's own value, else the global one)."""
    inf = dataclasses.replace(InferenceConfig(), **{k: v for k, v in eff.items() if "." not in k})
    h = SimpleNamespace(**{**t.hw, **_per_row(eff, PER_GPU, t.gpus, t.gpu, t.hw, inf)})
    inf_rows = SimpleNamespace(**{**dataclasses.asdict(inf),
                                  **_per_row(eff, PER_ENGINE, t.engines, t.eng, t.eng_cat, inf)})
    terms = server_terms(h, t.model, t.n_gpus, inf_rows)
    return inference.ServingParams(n_servers=len(t.rows), max_seqs=1, prefill_stall=False, bg_context=jnp.float32(0.0),
                                   prefill_attention=jnp.float32(1.0 if inf.prefill_attention else 0.0),
                                   **{k: jnp.asarray(np.asarray(v, np.float32)) for k, v in terms.items()})


@jax.jit
def _booked(p: inference.ServingParams, b, isl, osl, n_gpus):
    rows = jnp.arange(b.shape[0])
    prefill = inference.prefill_s(p, rows, isl, b)
    decode = inference.decode_steps_s(p, b, b * (isl + 1.0), b, osl - 1.0, server=rows)
    return {"throughput": b * osl / (prefill + decode) / n_gpus, "ttft": 1e3 * prefill,
            "tpot": 1e3 * decode / jnp.maximum(osl - 1.0, 1.0)}


def book(t: Table, eff: dict) -> dict:
    """Booked metrics of every row (throughput tokens/s per GPU, first token ms, ms per output token)."""
    f = lambda x: jnp.asarray(x, jnp.float32)    # noqa: E731
    return {k: np.asarray(v, np.float64) for k, v in _booked(servers(t, eff), f(t.batch), f(t.isl), f(t.osl),
                                                             f(t.n_gpus)).items()}


def errors(t: Table, booked: dict) -> dict:
    """Relative error booked / measured - 1 per metric (throughput: of the rate), nan where nothing measured."""
    return {k: booked[k] / t.measured[k] - 1.0 for k in METRICS}


# ------------------------------------------------------------------------------------------------ fitting
BOUNDS = {"eta_compute": (0.05, 1.0), "eta_memory": (0.05, 1.0), "eta_prefill": (0.05, 1.0),
          "eta_attention": (0.02, 1.0), "prefill_overhead_s_per_layer": (1e-9, 1e-3),
          "step_overhead_s_per_layer": (1e-9, 1e-3), "tp_sync_s_per_layer": (1e-9, 1e-3)}


def fit(t: Table, start: dict, sel: np.ndarray, steps: int = 3000, lr: float = 0.03) -> dict:
    """The efficiencies on rows ``sel``, from ``start``: the global ones and, jointly, each GPU's own efficiencies
    and each engine's own fixed costs, for GPUs and engines whose rows there span at least two models (others
    keep the catalog's, else the global value; :func:`held_out` and ``--fit`` pass a table without the catalog's
    fitted values). The global fixed costs (what an engine without data gets) are then the engines' geometric
    mean unless some rows name no engine. Minimises the
    sum over metrics of the mean absolute relative error over the rows by projected Adam on the logarithms of the values, kept inside
    BOUNDS, through the booking's own formulas (``jax.grad``); deterministic. The global eta_compute /
    eta_memory / eta_prefill / eta_attention (what a GPU without data gets) are then the geometric means of the
    GPUs' own."""
    import optax
    own = np.array([len(np.unique(t.model.n_params[sel & (t.gpu == gi)])) >= 2 for gi in range(len(t.gpus))])
    own_e = np.array([len(np.unique(t.model.n_params[sel & (t.eng == ei)])) >= 2 for ei in range(len(t.engines))])
    eng = jnp.asarray(np.maximum(t.eng, 0))
    own_e_row = jnp.asarray(np.append(own_e, False)[t.eng])
    f32 = lambda x: jnp.asarray(np.asarray(x, np.float64), jnp.float32)    # noqa: E731
    ecat = {k: f32(np.nan_to_num(t.eng_cat[k], nan=-1.0)) for k in PER_ENGINE}
    hw = {k: f32(np.nan_to_num(v, nan=-1.0)) for k, v in t.hw.items()}
    model = SimpleNamespace(**{k: f32(v) for k, v in vars(t.model).items()})
    gpu, own_row = jnp.asarray(t.gpu), jnp.asarray(own[t.gpu])
    meas = {k: f32(np.nan_to_num(t.measured[k], nan=1.0)) for k in METRICS}
    w = {k: f32(sel & np.isfinite(t.measured[k])) for k in METRICS}
    b, isl, osl, n = f32(t.batch), f32(t.isl), f32(t.osl), f32(t.n_gpus)
    lo = {k: np.log(BOUNDS[k][0]) for k in BOUNDS}
    hi = {k: np.log(BOUNDS[k][1]) for k in BOUNDS}
    heads, pre_attn = start["attention_heads"], InferenceConfig().prefill_attention

    def loss_fn(z):
        def resolve(keys, part, own_r, index, cat):       # a row's own fitted value, else the catalog's, else global
            return {k: jnp.where(own_r, jnp.exp(z[part][k])[index], jnp.where(cat[k] > 0, cat[k], jnp.exp(z["g"][k])))
                    for k in keys}
        inf = SimpleNamespace(**{k: jnp.exp(z["g"][k]) for k in GLOBAL}, attention_heads=heads)
        vars(inf).update(resolve(PER_ENGINE, "eng", own_e_row, eng, ecat))
        terms = server_terms(SimpleNamespace(**{**hw, **resolve(PER_GPU, "gpu", own_row, gpu, hw)}), model, n, inf)
        p = inference.ServingParams(n_servers=len(t.rows), max_seqs=1, prefill_stall=False,
                                    bg_context=jnp.float32(0.0), prefill_attention=jnp.float32(pre_attn), **terms)
        booked = _booked(p, b, isl, osl, n)
        total = 0.0
        for k in METRICS:
            e = jnp.abs(booked[k] / meas[k] - 1.0) * w[k]
            total = total + jnp.sum(e) / jnp.maximum(jnp.sum(w[k]), 1.0)
        return total

    def clip(z):
        return {part: {k: jnp.clip(v, lo[k], hi[k]) for k, v in z[part].items()} for part in z}
    z = clip({"g": {k: jnp.float32(np.log(start[k])) for k in GLOBAL},
              "gpu": {k: f32(np.log([start.get(f"{g}.{k}", start[k]) for g in t.gpus])) for k in PER_GPU},
              "eng": {k: f32(np.log([start.get(f"{e}.{k}", start[k]) for e in t.engines] or [start[k]]))
                      for k in PER_ENGINE}})
    opt = optax.adam(lr)

    @jax.jit
    def run(z):
        def step(_, c):
            z, s = c
            g = jax.grad(loss_fn)(z)
            u, s = opt.update(g, s, z)
            return clip(optax.apply_updates(z, u)), s
        return jax.lax.fori_loop(0, steps, step, (z, opt.init(z)))[0]
    z = run(z)
    eff = {k: float(np.exp(z["g"][k])) for k in GLOBAL} | {"attention_heads": heads}
    for k in PER_GPU:
        vals = np.exp(np.asarray(z["gpu"][k], np.float64))
        for gi, g in enumerate(t.gpus):
            if own[gi]:
                eff[f"{g}.{k}"] = float(vals[gi])
        if own.any():
            eff[k] = float(np.exp(np.mean(np.log(vals[own]))))
    for k in PER_ENGINE:
        vals = np.exp(np.asarray(z["eng"][k], np.float64))
        for ei, e in enumerate(t.engines):
            if own_e[ei]:
                eff[f"{e}.{k}"] = float(vals[ei])
        if own_e.any() and not (sel & (t.eng < 0)).any():
            eff[k] = float(np.exp(np.mean(np.log(vals[own_e]))))
    return eff


# where every fit starts (the shipped defaults' fit and each left-one-out fit alike): no data in it
START = {"eta_compute": 0.5, "eta_memory": 0.5, "eta_prefill": 0.5, "eta_attention": 0.5,
         "prefill_overhead_s_per_layer": 1e-5, "step_overhead_s_per_layer": 1e-5, "tp_sync_s_per_layer": 1e-5}


def shipped(hardware: dict) -> dict:
    """The efficiencies as shipped: [inference]'s defaults (the catalog's GPUs carry their own)."""
    inf = InferenceConfig()
    return {k: getattr(inf, k) for k in GLOBAL} | {"attention_heads": inf.attention_heads}


def mape(err, sel) -> float | None:
    ok = sel & np.isfinite(err)
    return float(np.mean(np.abs(err[ok]))) if ok.any() else None


def summary(t: Table, err: dict, prefix: str = "") -> dict:
    tp1 = t.n_gpus == 1
    every = np.ones(len(t.rows), bool)
    out = {f"{prefix}throughput_mape": mape(err["throughput"], every),
           f"{prefix}ttft_mape": mape(err["ttft"], every), f"{prefix}tpot_mape": mape(err["tpot"], every),
           f"{prefix}tp1_throughput_mape": mape(err["throughput"], tp1),
           f"{prefix}tp_throughput_mape": mape(err["throughput"], ~tp1)}
    return {k: round(v, 4) for k, v in out.items() if v is not None}


def without_catalog_fits(t: Table) -> Table:
    """``t`` without the catalog's own efficiencies and fixed costs (the project's are the fit on every row, so
    a held-out fit that read them would see its left-out rows)."""
    nan = lambda d: {k: np.full_like(v, np.nan) for k, v in d.items()}    # noqa: E731
    return dataclasses.replace(t, hw={**t.hw, **nan({k: t.hw[k] for k in PER_GPU})}, eng_cat=nan(t.eng_cat))


def held_out(t: Table, start: dict) -> tuple[dict, list]:
    """Leave each source out in turn: fit on the others from ``start`` (:data:`START`, with the attention form
    of the run) without the catalog's fitted values, book the left-out rows with that fit."""
    t = without_catalog_fits(t)
    booked = {k: np.full(len(t.rows), np.nan) for k in METRICS}
    fits = []
    for s in sorted(set(t.source)):
        out = t.source == s
        eff = fit(t, start, ~out)
        b = book(t, eff)
        for k in METRICS:
            booked[k][out] = b[k][out]
        fits.append((s, eff))
    return booked, fits


def report_test_set(t: Table, eff: dict, path: str) -> dict:
    """The test set: rows no fit reads (other sources, engines and models than the fitted data's), booked with the
    shipped values ``eff`` (the catalog's own, else [inference]'s) -- held out in the strict sense. Writes each row's
    booking to ``path``; returns test_n, the test_* errors and test_per_source."""
    booked = book(t, eff)
    err = errors(t, booked)
    per = {}
    for s in sorted(set(t.source)):
        sel = t.source == s
        per[s] = {"n": int(sel.sum()), **summary(t, {k: np.where(sel, v, np.nan) for k, v in err.items()})}
    rows = [[k, *(t.rows[i][c] for c in KEYS), t.rows[i]["engine"], f"{t.measured[k][i]:.4g}", f"{booked[k][i]:.4g}",
             f"{err[k][i]:+.3f}"] for k in METRICS for i in np.flatnonzero(np.isfinite(t.measured[k]))]
    write_csv(path, ["metric", *KEYS, "engine", "measured", "booked", "rel_error"], rows)
    return {"test_n": len(t.rows), **summary(t, err, "test_"), "test_per_source": per}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None, help="CSV of measured rows (default: the project's data/serving)")
    ap.add_argument("--catalog", default=None, help="TOML with [[hardware]] and [[models]] (default: the project's)")
    ap.add_argument("--fit", action="store_true", help="also refit the efficiencies on all rows and print them")
    ap.add_argument("--no-held-out", action="store_true", help="skip the leave-one-source-out fits")
    ap.add_argument("--pool-engines", action="store_true",
                    help="ignore the engine column: every row an engine without data (how [inference]'s defaults, "
                         "what a server of no named engine pays, are fitted)")
    ap.add_argument("--attention-heads", choices=("kv", "query"), default=None,
                    help="decode attention's read by KV heads or query heads (default: [inference]'s)")
    ap.add_argument("--test-data", default=None,
                    help="CSV of rows no fit reads, booked with the shipped values and reported apart as test_* "
                         "(default: the project's data/serving/test.csv without --data, none with it; 'none': skip)")
    ap.add_argument("--out", default="results", help="folder for latency_validation.csv (and latency_test.csv)")
    args = ap.parse_args(argv)
    try:
        check_writable(args.out)
        hardware, models, engines = read_catalog(args.catalog or DEFAULT_CATALOG)
        rows = read_rows(args.data or DEFAULT_DATA, hardware, models, engines)
        test_path = args.test_data or (None if args.data else DEFAULT_TEST)
        test_rows = [] if test_path in (None, "none") else read_rows(test_path, hardware, models, engines, "--test-data")
        if args.pool_engines:
            rows = [{**r, "engine": ""} for r in rows]
            test_rows = [{**r, "engine": ""} for r in test_rows]
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
    t = table(rows, hardware, models, engines)
    eff = shipped(hardware)
    if args.attention_heads:
        eff["attention_heads"] = args.attention_heads
    booked = book(t, eff)
    err = errors(t, booked)
    out = {"bench": "latency", "n": len(rows), **summary(t, err),
           "n_throughput": int(np.isfinite(t.measured["throughput"]).sum()),
           "n_ttft": int(np.isfinite(t.measured["ttft"]).sum()), "n_tpot": int(np.isfinite(t.measured["tpot"]).sum()),
           "sources": sorted(set(t.source)), "attention_heads": eff["attention_heads"]}
    ho = None
    if len(set(t.source)) >= 2 and not args.no_held_out:
        ho, fits = held_out(t, {**START, "attention_heads": eff["attention_heads"]})
        out.update(summary(t, errors(t, ho), "held_out_"))
        out["held_out_per_source"] = {s: summary(t, {k: np.where(t.source == s, v, np.nan)
                                                     for k, v in errors(t, ho).items()}) for s, _ in fits}
    if args.fit:
        fitted = fit(without_catalog_fits(t), {**START, "attention_heads": eff["attention_heads"]},
                     np.ones(len(rows), bool))
        out["fitted"] = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in fitted.items()}
        out["fitted"].update(summary(t, errors(t, book(without_catalog_fits(t), fitted)), "fit_"))
    header = ["metric", *KEYS, "measured", "booked", "rel_error", "held_out_booked", "held_out_rel_error"]
    table_rows = []
    for k in METRICS:
        for i in np.flatnonzero(np.isfinite(t.measured[k])):
            r = rows[i]
            hb = "" if ho is None else f"{ho[k][i]:.4g}"
            he = "" if ho is None else f"{ho[k][i] / t.measured[k][i] - 1:+.3f}"
            table_rows.append([k, *(r[c] for c in KEYS), f"{t.measured[k][i]:.4g}", f"{booked[k][i]:.4g}",
                               f"{err[k][i]:+.3f}", hb, he])
    os.makedirs(args.out, exist_ok=True)
    write_csv(os.path.join(args.out, "latency_validation.csv"), header, table_rows)
    if test_rows:
        out.update(report_test_set(table(test_rows, hardware, models, engines), eff,
                               os.path.join(args.out, "latency_test.csv")))
    def line(s, n, mapes, tag=""):
        print(f"{s:40s} rows {n:4d}  " + "  ".join(f"{k} {v:.3f}" for k, v in mapes.items() if v is not None) + tag)
    for s in sorted(set(t.source)):
        sel = t.source == s
        line(s, int(sel.sum()), {k: mape(err[k], sel) for k in METRICS})
    for s, e in out.get("test_per_source", {}).items():
        line(s, e["n"], {k: e.get(k + "_mape") for k in METRICS}, "  (test set: never fitted)")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
    sys.exit(0)
