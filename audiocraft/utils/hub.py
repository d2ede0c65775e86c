"""Whether the Hugging Face hub can be reached, asked once per process.

A machine without network then fails (or falls back to the local cache) at once, instead of spending ~20 s in
huggingface_hub's retries at every file.
"""
from __future__ import annotations

import typing as tp

# Whether the hub answered, per endpoint.
_HUB_REACHABLE: tp.Dict[str, bool] = {}
HUB_PROBE_TIMEOUT = 3.0  # seconds


def _probe(url: str, timeout: float) -> bool:
    """False when ``url`` cannot be reached at all (no route, refused, name unknown, timeout); any answer, even
    an HTTP error or a TLS problem, counts as reachable (huggingface_hub then reports what is wrong)."""
    import ssl
    import urllib.error
    import urllib.request
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return True
    except urllib.error.URLError as err:
        return isinstance(err.reason, ssl.SSLError)
    except ssl.SSLError:
        return True
    except OSError:  # a timeout or a reset outside urllib's wrapping
        return False
    except Exception:  # noqa: BLE001 - a malformed endpoint and the like: let huggingface_hub report it
        return True
    return True


def hub_reachable(endpoint: tp.Optional[str] = None) -> bool:
    """Whether the hub (``endpoint``, default ``$HF_ENDPOINT`` or huggingface.co) answers; False without asking
    when ``HF_HUB_OFFLINE`` is set. The answer is remembered for the rest of the process."""
    from huggingface_hub import constants
    if constants.HF_HUB_OFFLINE:
        return False
    endpoint = endpoint or constants.ENDPOINT
    if endpoint not in _HUB_REACHABLE:
        _HUB_REACHABLE[endpoint] = _probe(endpoint, HUB_PROBE_TIMEOUT)
    return _HUB_REACHABLE[endpoint]
