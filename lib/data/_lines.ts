/**
 * Splits a byte stream into lines lazily: one chunk is read only when the consumer asks for a line
 * that is not buffered yet. Lines are yielded as bytes (without `\n` and a trailing `\r`) so the
 * caller can tell invalid UTF-8 apart per line.
 *
 * @module
 */

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function stripCr(line: Uint8Array): Uint8Array {
  return line.length > 0 && line[line.length - 1] === 13 ? line.subarray(0, line.length - 1) : line;
}

/**
 * Yields the lines of `stream`. A last line without a trailing newline is yielded too; a final
 * newline does not make an extra empty line. The yielded view is valid until the next line is
 * requested. Returning early (or throwing) cancels `stream`, which closes a file behind it.
 */
export async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
  const reader = stream.getReader();
  let finished = false;
  try {
    let pending: Uint8Array[] = [];
    while (true) {
      const { done, value } = await reader.read();
      if (done) {
        finished = true;
        break;
      }
      let start = 0;
      while (true) {
        const nl = value.indexOf(10, start);
        if (nl === -1) break;
        const piece = value.subarray(start, nl);
        const line = pending.length === 0 ? piece : concat([...pending, piece]);
        pending = [];
        start = nl + 1;
        yield stripCr(line);
      }
      // Copy the tail: the stream may reuse its chunk buffer.
      if (start < value.length) pending.push(value.slice(start));
    }
    if (pending.length > 0) yield stripCr(concat(pending));
  } finally {
    if (finished) reader.releaseLock();
    else await reader.cancel();
  }
}
