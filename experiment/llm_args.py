"""Which deciding LLM answers, the same flags in every tool that runs the ICL policy.

    --llm-model NAME          the model: a registered name, .gguf path or checkpoint folder for the embedded
                              Flax runtime; with --llm-endpoint, the server's model name (alias: --model)
    --llm-endpoint URL        an OpenAI-compatible server (vLLM, SGLang, llama.cpp, an API), e.g.
                              http://127.0.0.1:8080/v1; the key comes from $OPENAI_API_KEY when set
    --llm-in-flight N         requests in flight at once to the server (4)

``check_llm_args`` raises :class:`jaxsim.fields.ConfigError` naming the flag, before any compute.
"""
from __future__ import annotations

import argparse

from jaxsim.fields import ConfigError


def add_llm_args(ap, model_default: str | None = None, model_help: str | None = None) -> None:
    """``ap``: a parser or an argument group. ``--model`` and ``--llm-model`` set the same ``args.model``."""
    ap.add_argument("--llm-model", "--model", dest="model", default=model_default,
                    help=model_help or "deciding LLM: registered name, .gguf path or checkpoint folder; with "
                    "--llm-endpoint the server's model name (smollm2-135m)")
    ap.add_argument("--llm-endpoint", default=None, metavar="URL",
                    help="ask this OpenAI-compatible server (/v1/completions with logprobs) instead of the "
                    "embedded Flax runtime; answers are cached on disk ($GENAI_EDGE_LAB_LLM_CACHE)")
    ap.add_argument("--llm-in-flight", type=int, default=None, metavar="N",
                    help="requests in flight at once to --llm-endpoint (4)")


def check_llm_args(args: argparse.Namespace, check_model: bool = True) -> None:
    """The endpoint URL and in-flight count, and (``check_model``) a model name that the runtime can load
    (any name goes to a server)."""
    if args.llm_endpoint:
        from icl.llm.endpoint import EndpointError, check_endpoint, check_reachable
        try:
            args.llm_endpoint = check_endpoint(args.llm_endpoint)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if not args.model:
            raise ConfigError("--llm-model: the server's model name is required with --llm-endpoint")
        try:
            check_reachable(args.llm_endpoint)
        except EndpointError as e:
            raise ConfigError(str(e)) from None
    if args.llm_in_flight is not None and args.llm_in_flight < 1:
        raise ConfigError(f"--llm-in-flight = {args.llm_in_flight}: allowed an integer >= 1")
    if check_model and args.llm_endpoint is None and args.model is not None:
        from icl.llm.registry import MODELS, is_model_source
        if not is_model_source(args.model):
            raise ConfigError(f"--llm-model {args.model!r}: unknown; allowed: {', '.join(MODELS)}, a .gguf file or "
                              "a Hugging Face checkpoint folder (config.json + *.safetensors), or a server's "
                              "model name with --llm-endpoint")


def llm_fields(args: argparse.Namespace) -> dict:
    """The ``icl.policy.ICLConfig`` fields the flags set (those given)."""
    over = {"model": args.model, "endpoint": args.llm_endpoint or None, "max_in_flight": args.llm_in_flight}
    return {k: v for k, v in over.items() if v is not None}
