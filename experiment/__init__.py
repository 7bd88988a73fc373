"""The experiment layer, above the simulator (``jaxsim``), the baselines and the ICL policy (``icl``).

``registry``  every policy by name (device and host alike) from one set of options; ``register`` adds yours
``host``      the host-policy protocol and its runner (jitted environment, decisions on the host)
``runs``      run directories: roll out, summarise, write atomically, resume
``files``     atomic writes of text, JSON, CSV, NumPy archives and configs

``jaxsim-montecarlo``, the figure study, ``train_ppo`` and the benches call it; ``scripts/`` keeps argument
parsing and printing.
"""

from .files import atomic_write_bytes, save_config, write_csv, write_json, write_npz, write_text
from .host import HostPolicy, SimpleHostPolicy, auto_batch_episodes, rollout_host
from .registry import PolicyOptions, default_policies, is_host, make_policy, policy_names, register
from .runs import RunSpec, evaluate, run_policies

__all__ = ["HostPolicy", "PolicyOptions", "RunSpec", "SimpleHostPolicy", "atomic_write_bytes", "auto_batch_episodes",
           "default_policies", "evaluate", "is_host", "make_policy", "policy_names", "register", "rollout_host",
           "run_policies", "save_config", "write_csv", "write_json", "write_npz", "write_text"]
