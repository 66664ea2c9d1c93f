"""Model providers: the real openai and anthropic SDKs over HTTP, and recorded transcripts.

The app builds one client per tier with :func:`build_model_client`; the engine sees only the
``ModelClient`` port. The SDKs are imported here and nowhere else in Keel.
"""

from keel.providers.base import ProviderSettings
from keel.providers.registry import build_model_client

__all__ = ["ProviderSettings", "build_model_client"]
