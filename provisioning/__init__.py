"""Automatic user provisioning from Microsoft Entra ID into Druva inSync."""
