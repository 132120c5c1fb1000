// Search results with their summaries when the book is opened from disk (file://).
//
// Sphinx's search shows a summary under each hit by fetch()ing the page, which a
// browser refuses for file:// pages: readers of a disk copy saw titles only. The
// build writes the pages' text into _static/reader-search-pages.js (window.READER_PAGES,
// page path -> a small HTML of the page's sections), and fetch() is answered from it.
(() => {
  if (window.location.protocol !== "file:") return;
  const pages = window.READER_PAGES || {};
  const byUrl = new Map(Object.entries(pages).map(
    ([path, html]) => [new URL(path, window.location.href).href, html]));
  const fetchFromNetwork = window.fetch.bind(window);
  window.fetch = (resource, options) => {
    const url = new URL(typeof resource === "string" ? resource : resource.url,
                        window.location.href).href.split("#")[0];
    if (byUrl.has(url)) {
      return Promise.resolve(new Response(byUrl.get(url),
                                          {headers: {"Content-Type": "text/html"}}));
    }
    return fetchFromNetwork(resource, options);
  };
})();
