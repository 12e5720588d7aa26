"""Resumable uploads speaking tus 1.0 (SPEC §14): a file sent in pieces that a cut, a reload or
a proxy's body limit does not lose.

- `models`: `ResumableUpload`, one upload in progress (or finished, not yet taken by an
  operation): its owner, length, offset, where its bytes are stored, and its expiry.
- `protocol`: the tus headers (versions, extensions, metadata, checksums), read and written.
- `pieces`: appending one piece (a PATCH body) at the upload's offset: streamed into the file
  store with the checks of a one-request upload (size, UTF-8 across pieces, no NUL) and the
  piece's checksum; a piece refused leaves the upload as it was.
- `services`: create, append, finish, delete, expire, and hand a finished upload over to an
  operation (`upload=` on a start).

The HTTP side is `operations.api.uploads`; the storage side `operations.storage.resumable`.
"""
