"""A Cloud Storage stand-in on the loopback interface, for tests.

Serves the subset of the GCS JSON API that TensorStore's `gcs` driver (orbax's
array storage for gs:// paths), orbax's bucket check and the workdir lease
(google-cloud-storage) use: bucket metadata, media and metadata reads with
generation preconditions and byte ranges, media and multipart uploads and
deletes with generation preconditions, and prefix listings. Objects are files under
`root/<bucket>/<name>`, so a test can read what a job wrote. Point the
clients at it with

    TENSORSTORE_GCS_HTTP_URL=http://127.0.0.1:PORT
    GOOGLE_AUTH_TOKEN_FOR_TESTING=any
    STORAGE_EMULATOR_HOST=http://127.0.0.1:PORT   (google-cloud-storage)
"""

from __future__ import annotations

import http.server
import itertools
import json
import os
import threading
import urllib.parse


class FakeGcs:
  """A threaded HTTP server; `with FakeGcs(root) as gcs:` serves gcs.url."""

  def __init__(self, root: str):
    self.root = root
    self._generation = itertools.count(1)
    self._generations: dict[str, int] = {}
    self._lock = threading.RLock()
    self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                   self._handler())
    self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
    self._thread = threading.Thread(target=self._server.serve_forever,
                                    daemon=True)

  def __enter__(self) -> "FakeGcs":
    self._thread.start()
    return self

  def __exit__(self, *exc) -> None:
    self._server.shutdown()
    self._server.server_close()

  def path(self, bucket: str, name: str) -> str:
    return os.path.join(self.root, bucket, name)

  def generation(self, bucket: str, name: str) -> int:
    """The object's generation, 0 when it does not exist."""
    key = f"{bucket}/{name}"
    if not os.path.isfile(self.path(bucket, name)):
      return 0
    with self._lock:
      if key not in self._generations:  # written beside the server
        self._generations[key] = next(self._generation)
      return self._generations[key]

  def metadata(self, bucket: str, name: str) -> dict:
    return {"kind": "storage#object", "bucket": bucket, "name": name,
            "generation": str(self.generation(bucket, name)),
            "metageneration": "1",
            "size": str(os.path.getsize(self.path(bucket, name)))}

  def _handler(self):
    gcs = self

    class Handler(http.server.BaseHTTPRequestHandler):
      protocol_version = "HTTP/1.1"

      def log_message(self, *args):  # quiet
        pass

      def _reply(self, status, body=b"", headers=None):
        self.send_response(status)
        for key, value in (headers or {}).items():
          self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
          self.wfile.write(body)

      def _json(self, status, value):
        self._reply(status, json.dumps(value).encode(),
                    {"Content-Type": "application/json"})

      def _parse(self):
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(
            url.query, keep_blank_values=True).items()}
        parts = url.path.split("/")
        return parts, query

      def _preconditions_fail(self, query, generation):
        if "ifGenerationMatch" in query and int(
            query["ifGenerationMatch"]) != generation:
          return True
        return False

      def do_GET(self):  # pylint: disable=invalid-name
        parts, query = self._parse()
        if parts[1:2] == ["download"]:  # google-cloud-storage's media reads
          parts = parts[:1] + parts[2:]
        # /storage/v1/b/<bucket>/o[/<object>]
        if parts[1:4] != ["storage", "v1", "b"] or len(parts) < 5:
          return self._json(404, {"error": "unknown path"})
        bucket = parts[4]
        if len(parts) == 5:  # the bucket's metadata (a flat namespace)
          return self._json(200, {"kind": "storage#bucket", "name": bucket,
                                  "id": bucket})
        if len(parts) == 6:
          return self._list(bucket, query)
        name = urllib.parse.unquote("/".join(parts[6:]))
        generation = gcs.generation(bucket, name)
        if not generation:
          return self._json(404, {"error": {"code": 404}})
        if self._preconditions_fail(query, generation):
          return self._json(412, {"error": {"code": 412}})
        if query.get("ifGenerationNotMatch") == str(generation):
          return self._reply(304, b"", {"x-goog-generation": str(generation)})
        if query.get("alt") != "media":
          return self._json(200, gcs.metadata(bucket, name))
        with open(gcs.path(bucket, name), "rb") as f:
          data = f.read()
        headers = {"x-goog-generation": str(generation),
                   "Content-Type": "application/octet-stream"}
        byte_range = self.headers.get("Range")
        if byte_range and byte_range.startswith("bytes="):
          first, _, last = byte_range[6:].partition("-")
          if first == "":  # a suffix: the last N bytes
            start, stop = max(len(data) - int(last), 0), len(data)
          else:
            start = int(first)
            stop = int(last) + 1 if last else len(data)
          headers["Content-Range"] = (f"bytes {start}-{max(stop - 1, start)}/"
                                      f"{len(data)}")
          return self._reply(206, data[start:stop], headers)
        return self._reply(200, data, headers)

      do_HEAD = do_GET  # pylint: disable=invalid-name

      def _list(self, bucket, query):
        prefix = query.get("prefix", "")
        start, end = query.get("startOffset", ""), query.get("endOffset")
        base = os.path.join(gcs.root, bucket)
        items = []
        for directory, _, files in os.walk(base):
          for file in files:
            name = os.path.relpath(os.path.join(directory, file), base)
            if (name.startswith(prefix) and name >= start
                and (end is None or name < end)):
              items.append(gcs.metadata(bucket, name))
        items.sort(key=lambda item: item["name"])
        return self._json(200, {"kind": "storage#objects", "items": items})

      def do_POST(self):  # pylint: disable=invalid-name
        parts, query = self._parse()
        # /upload/storage/v1/b/<bucket>/o?uploadType=media&name=<object>
        if parts[1:5] != ["upload", "storage", "v1", "b"]:
          return self._json(404, {"error": "unknown path"})
        bucket = parts[5]
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if query.get("uploadType") == "multipart":
          # google-cloud-storage's small uploads: metadata and media parts.
          metadata, body = self._multipart(body)
          name = metadata["name"]
        else:
          name = query["name"]
        with gcs._lock:  # pylint: disable=protected-access
          if self._preconditions_fail(query, gcs.generation(bucket, name)):
            return self._json(412, {"error": {"code": 412}})
          path = gcs.path(bucket, name)
          os.makedirs(os.path.dirname(path), exist_ok=True)
          with open(path, "wb") as f:
            f.write(body)
          gcs._generations[f"{bucket}/{name}"] = next(gcs._generation)  # pylint: disable=protected-access
        return self._json(200, gcs.metadata(bucket, name))

      def _multipart(self, body):
        """A multipart/related body -> (JSON metadata, media bytes)."""
        boundary = self.headers["Content-Type"].split("boundary=")[1].strip(
            '"').encode()
        parts = [p for p in body.split(b"--" + boundary)
                 if p.strip() not in (b"", b"--")]
        contents = [p.split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n")
                    for p in parts]
        return json.loads(contents[0]), contents[1]

      def do_DELETE(self):  # pylint: disable=invalid-name
        parts, query = self._parse()
        bucket = parts[4]
        name = urllib.parse.unquote("/".join(parts[6:]))
        with gcs._lock:  # pylint: disable=protected-access
          generation = gcs.generation(bucket, name)
          if not generation:
            return self._json(404, {"error": {"code": 404}})
          if self._preconditions_fail(query, generation):
            return self._json(412, {"error": {"code": 412}})
          os.remove(gcs.path(bucket, name))
          gcs._generations.pop(f"{bucket}/{name}", None)  # pylint: disable=protected-access
        return self._reply(204)

    return Handler
