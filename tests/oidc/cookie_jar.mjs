// A minimal cookie jar for following an authorization redirect chain headlessly: one
// host, so only name, path and expiry matter (RFC 6265 default path, Path, Max-Age,
// Expires). Shared by token.mjs and tests/node/mcp_client.mjs.
export class CookieJar {
  #cookies = new Map(); // `${path}\n${name}` -> { name, value, path, expires }

  store(response, requestUrl) {
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(';').map((part) => part.trim());
      const eq = pair.indexOf('=');
      if (eq < 1) continue;
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      // Default path: the request path up to its last '/' (RFC 6265 section 5.1.4).
      let path = requestUrl.pathname.replace(/\/[^/]*$/, '') || '/';
      let expires = Infinity;
      for (const attribute of attributes) {
        const [key, ...rest] = attribute.split('=');
        const attrValue = rest.join('=');
        switch (key.toLowerCase()) {
          case 'path': path = attrValue || '/'; break;
          case 'max-age': expires = Date.now() + Number(attrValue) * 1000; break;
          case 'expires': if (expires === Infinity) expires = Date.parse(attrValue); break;
          default: break;
        }
      }
      const key = `${path}\n${name}`;
      if (expires <= Date.now()) this.#cookies.delete(key);
      else this.#cookies.set(key, { name, value, path, expires });
    }
  }

  header(url) {
    return [...this.#cookies.values()]
      .filter(({ path, expires }) => expires > Date.now()
        && (url.pathname === path || url.pathname.startsWith(path.endsWith('/') ? path : `${path}/`)))
      .map(({ name, value }) => `${name}=${value}`)
      .join('; ');
  }
}
