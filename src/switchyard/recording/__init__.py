"""Record and replay of upstream provider traffic.

The recorder wraps the upstream seam (:mod:`switchyard.upstream`) of each provider; which
mode a server runs in is decided in :func:`switchyard.transports.transport_for`. Modules:

``cassette``       the cassette file format, atomic and multi-process-safe writing
``scrub``          what of a request may be written (never a secret)
``matching``       canonical bodies, ignored fields, dotted-path differences
``library``        the cassettes of a server: lookup, ordered replay, recording
``miss``           the error for a request nothing matches, naming the closest recording
``transport``      :class:`RecordingTransport`, the wrapper transport itself
``importer``       Llama Stack recordings -> cassettes (``switchyard cassettes``: ``cli``)
``pytest_plugin``  the ``switchyard`` fixture for users' own test suites (``harness``)
``llama_stack``, ``sse``  Llama Stack's recording format; server-sent events
"""

from switchyard.recording.cassette import (
    Cassette,
    Interaction,
    RecordedRequest,
    RecordedResponse,
    StreamEvent,
)
from switchyard.recording.files import load_cassette, save_cassette
from switchyard.recording.importer import import_llama_stack
from switchyard.recording.library import CassetteLibrary
from switchyard.recording.transport import RecordingTransport

__all__ = [
    "Cassette",
    "CassetteLibrary",
    "Interaction",
    "RecordedRequest",
    "RecordedResponse",
    "RecordingTransport",
    "StreamEvent",
    "import_llama_stack",
    "load_cassette",
    "save_cassette",
]
