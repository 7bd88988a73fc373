"""Benchmarks: the simulator against its NumPy reference, the ICL decision bench, the LLM runtime, PPO; and the
GPU machine's one-call check (``device_check.sh``)."""
