"""hikari's command frameworks (arc, tanjun) on worker replicas."""

import warnings

with warnings.catch_warnings():
    # tanjun 2.17.7 subclasses alluka's deprecated BasicContext when imported; the suite turns
    # warnings into errors, so it is imported here once, before any test module needs it.
    warnings.simplefilter("ignore", DeprecationWarning)
    import tanjun  # noqa: F401
