"""What an upload is, judged by its content (never its file name).

The client picks its decoder from a file's extension; an upload's name is whatever the person's
computer called it. So the web front reads the first bytes, recognises the container by its
magic number, and stores the upload under a suffix the client understands. An image is also
decoded here (it is needed in memory anyway); a video's frames are decoded by the client.
"""

from __future__ import annotations

from dataclasses import dataclass

from dfdetect.client.errors import ClientError

HEAD_BYTES = 16  # enough for every signature below


@dataclass(frozen=True)
class MediaType:
    """A recognised upload: image or video, its format's name, and the suffix it is stored under."""

    kind: str    # "image" or "video"
    name: str    # what people call it
    suffix: str  # a suffix the client's decoders accept for it


def _riff(form: bytes):
    return lambda head: head[:4] == b"RIFF" and head[8:12] == form


_SIGNATURES = (
    (lambda h: h[:3] == b"\xff\xd8\xff", MediaType("image", "JPEG", ".jpg")),
    (lambda h: h[:8] == b"\x89PNG\r\n\x1a\n", MediaType("image", "PNG", ".png")),
    (lambda h: h[:2] == b"BM", MediaType("image", "BMP", ".bmp")),
    (_riff(b"WEBP"), MediaType("image", "WebP", ".webp")),
    (lambda h: h[:4] in (b"II*\x00", b"MM\x00*"), MediaType("image", "TIFF", ".tif")),
    (lambda h: h[4:8] == b"ftyp" and h[8:10] == b"qt", MediaType("video", "QuickTime", ".mov")),
    (lambda h: h[4:8] == b"ftyp", MediaType("video", "MP4", ".mp4")),
    (_riff(b"AVI "), MediaType("video", "AVI", ".avi")),
    (lambda h: h[:4] == b"\x1a\x45\xdf\xa3", MediaType("video", "Matroska/WebM", ".mkv")),
    (lambda h: h[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"), MediaType("video", "MPEG", ".mpg")),
)

ACCEPTED = ("images: " + ", ".join(t.name for _, t in _SIGNATURES if t.kind == "image")
            + "; videos: " + ", ".join(t.name for _, t in _SIGNATURES if t.kind == "video"))


def sniff(head: bytes, source: str) -> MediaType:
    """The media type whose signature ``head`` (the upload's first bytes) starts with.

    ClientError INVALID_ARGUMENT when the upload is empty or is no image or video we read."""
    if not head:
        raise ClientError("INVALID_ARGUMENT", "the upload is empty; expected an image or a video", source)
    for matches, media in _SIGNATURES:
        if matches(head):
            return media
    raise ClientError("INVALID_ARGUMENT", f"not an image or a video we can read (expected {ACCEPTED})", source)
