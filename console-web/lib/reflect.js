// Mirrors a page's visible state on `data-*` attributes of an element (the page's <body> by
// default): the screen shown, the connection, the call in progress. What a page shows can then be
// read from the DOM (by the browser tests, by anyone inspecting it) without a global object.
// Only the listed keys are mirrored, as strings; objects and arrays as JSON; null removes the
// attribute. Only top-level assignments are seen: replace an array or object, do not mutate it.

/**
 * @template {object} T
 * @param {T} target the page's state object
 * @param {Record<string, true | ((value: any) => any)>} keys the keys to mirror, each with an
 *   optional function that turns the value into what the DOM shows
 * @param {HTMLElement} [el]
 * @returns {T} a proxy: assigning a listed key updates the attribute
 */
export function reflect(target, keys, el = document.body) {
  const write = (key, value) => {
    const shown = typeof keys[key] === 'function' ? keys[key](value) : value;
    if (shown === null || shown === undefined) delete el.dataset[key];
    else el.dataset[key] = typeof shown === 'object' ? JSON.stringify(shown) : String(shown);
  };
  for (const key of Object.keys(keys)) write(key, target[key]);
  return new Proxy(target, {
    set(t, key, value) {
      t[key] = value;
      if (typeof key === 'string' && Object.hasOwn(keys, key)) write(key, value);
      return true;
    },
  });
}
