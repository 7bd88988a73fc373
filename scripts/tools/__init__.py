"""Data tools and checks: delays against measured serving (``validate_latency``), the roofline's calibration on
this machine, the tokenizer's reference data, the config fuzzer."""
