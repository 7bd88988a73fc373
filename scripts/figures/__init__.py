"""The paper's figures (reward, quality, shots, explore, size, pertype), the comparison table and the claims,
from cached runs; ``reproduce`` runs them all; ``plot`` draws one ``jaxsim-montecarlo`` run folder."""
