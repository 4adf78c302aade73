"""Settings for the whole suite."""

import os

from hypothesis import HealthCheck, settings

# Timings are benchmarks, not tests: on a shared, noisy machine a slow example is not a failure.
# With CI set, Hypothesis's own "ci" profile (derandomized, no deadline) stays in force.
settings.register_profile(
    "shared-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
if not os.environ.get("CI"):
    settings.load_profile("shared-machine")
