/** File extensions of the media gengate stores and providers return, with their types. */
const BY_EXTENSION: Record<string, string> = {
  png: "image/png",
  apng: "image/apng",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  webp: "image/webp",
  gif: "image/gif",
  avif: "image/avif",
  mp4: "video/mp4",
  webm: "video/webm",
  mov: "video/quicktime",
  wav: "audio/wav",
  mp3: "audio/mpeg",
  m4a: "audio/mp4",
  ogg: "audio/ogg",
  flac: "audio/flac",
  bin: "application/octet-stream",
};

/** The type a path's extension names (`/a/b.PNG` → `image/png`), if it is one we know. */
export function contentTypeForPath(pathname: string): string | undefined {
  const ext = /\.([a-z0-9]+)$/i.exec(pathname)?.[1]?.toLowerCase();
  return ext ? BY_EXTENSION[ext] : undefined;
}

/** The extension (with its dot) to store a type under; `.bin` for anything unknown. */
export function extensionFor(contentType: string): string {
  const found = Object.entries(BY_EXTENSION).find(([, ct]) => ct === contentType);
  return found ? `.${found[0]}` : ".bin";
}
