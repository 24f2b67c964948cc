"""Remote model storage for the local backend: s3://, gs:// and http(s):// models fetched into
a content-addressed cache, with the same URI semantics as the Kubernetes init container.

``fetch(uri, cache_dir)`` returns the local path of the model (a file, or a folder for a prefix),
downloading it once per object version; see ``mlkube.storage.cache``.
"""

from mlkube.storage.cache import default_cache_dir, fetch
from mlkube.storage.objects import FetchError
from mlkube.storage.uri import FETCH_SCHEMES, is_fetched

__all__ = ["FETCH_SCHEMES", "FetchError", "default_cache_dir", "fetch", "is_fetched"]
