"""engine: everything that touches disk, SQL or the network.

Owns the database (schema, bulk import, history reads), settings, the list code, the
biweekly batch's orchestration and persistence, the checkout service, manufacturer
extracts and the `listwise` command line. `cycles/` and `coupons/` stay pure.
"""

__all__ = ["errors", "config", "db", "codes"]
