"""engine.sample_chain: the synthetic chain generator — import-format files plus the truth it planted.

Owns `generate(out_dir, customers, weeks, seed, ...)`, which writes stores, customers, products,
transactions and deals exactly as a chain would export them (README, "Import contract"), and
`truth/` with the planted purchase cycles, brand preferences, volume tiers and household traits
that tests and benchmarks check the models against. The generative model is described in
`engine/sample_chain/generator.py`; the repository's `fixtures/sample/` is a small committed run
(see its README). It lives in engine because it writes files and `listwise demo` needs it at run
time; a top-level `fixtures` package would clash with PyPI's `fixtures`.
"""

from engine.sample_chain.generator import generate

__all__ = ["generate"]
