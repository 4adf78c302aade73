"""Druva inSync adapter: the ``Druva`` port over Druva's REST API."""

from provisioning.adapters.druva.client import DruvaClient, DruvaOptions
from provisioning.adapters.druva.retry import DruvaRetryPolicy

__all__ = ["DruvaClient", "DruvaOptions", "DruvaRetryPolicy"]
