// A tiny message catalogue: one JSON file per language under ./messages/ (`it.json`, `en.json`, …),
// flat keys, `{name}` placeholders. Italian is the reference: a key missing in another language
// falls back to Italian, then to the key itself. Adding a language = adding a JSON file.

/** The reference language, whose catalogue must hold every key. */
export const REFERENCE_LANGUAGE = 'it';

/**
 * Fetches the catalogues of `languages` (the reference language is always loaded). A language
 * whose file is missing is left out with a console warning.
 * @param {string[]} languages e.g. `['it', 'en']`
 * @param {string | URL} [base] the folder of the JSON files
 * @returns {Promise<Catalogue>}
 */
export async function loadCatalogue(languages, base = new URL('./messages/', import.meta.url)) {
  const wanted = [...new Set([REFERENCE_LANGUAGE, ...languages])];
  const entries = await Promise.all(wanted.map(async (lang) => {
    try {
      const res = await fetch(new URL(`${lang}.json`, base));
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      return [lang, await res.json()];
    } catch (e) {
      console.warn(`i18n: no catalogue for ${lang}: ${e.message}`);
      return null;
    }
  }));
  return new Catalogue(Object.fromEntries(entries.filter(Boolean)));
}

/** The messages of several languages. */
export class Catalogue {
  /** @param {Record<string, Record<string, string>>} messages by language, then by key */
  constructor(messages) {
    this.messages = messages;
  }

  /** The loaded languages, reference first. */
  get languages() {
    return Object.keys(this.messages).sort((a, b) => (a === REFERENCE_LANGUAGE ? -1 : b === REFERENCE_LANGUAGE ? 1 : 0));
  }

  /** The language's own name ("Italiano", "English"), or its code. */
  name(lang) {
    return this.messages[lang]?._language?.name ?? lang;
  }

  /**
   * The message `key` in `lang` with `{placeholders}` filled from `vars`.
   * @param {string} lang
   * @param {string} key
   * @param {Record<string, string | number>} [vars]
   * @returns {string}
   */
  t(lang, key, vars = {}) {
    const text = this.messages[lang]?.[key] ?? this.messages[REFERENCE_LANGUAGE]?.[key] ?? key;
    return text.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
  }

  /**
   * The companion language shown small beside `lang`: Italian beside any other language, English
   * beside Italian (when loaded).
   * @param {string} lang
   * @returns {string | null}
   */
  companion(lang) {
    if (lang !== REFERENCE_LANGUAGE) return REFERENCE_LANGUAGE;
    return this.messages.en ? 'en' : null;
  }
}

/**
 * Bilingual text for the staff pages: the main language large and the other small beside it (the
 * second hidden from screen readers, which read the page's language only).
 */
export class Bilingual {
  /**
   * @param {Catalogue} cat the loaded catalogues
   * @param {string} lang the main language
   * @param {string} other the language shown small beside it
   */
  constructor(cat, lang, other) {
    this.cat = cat;
    this.lang = lang;
    this.other = other;
  }

  /** `key` in the main language. */
  t(key, vars) {
    return this.cat.t(this.lang, key, vars);
  }

  /** Fills `el` with `key` in the main language and the other language small beside it. */
  set(el, key, vars = {}) {
    el.dataset.i18n = key;
    el.i18nVars = vars;
    const main = document.createElement('span');
    main.textContent = this.cat.t(this.lang, key, vars);
    const sub = document.createElement('span');
    sub.className = 'sub';
    sub.lang = this.other;
    sub.setAttribute('aria-hidden', 'true');
    sub.textContent = this.cat.t(this.other, key, vars);
    el.replaceChildren(main, sub);
    return el;
  }

  /** A new `tag` element with bilingual text. */
  el(tag, key, vars, className) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    return this.set(el, key, vars);
  }

  /** A service's name in the main language, or its id when the catalogue has none. */
  service(id) {
    const name = this.t(`service.${id}`);
    return name === `service.${id}` ? id : name;
  }
}
