// Framework tabs remember the reader's order of preference, not only the last choice.
//
// sphinx-design keeps one id per sync group, so a reader who chose TensorFlow, then
// NumPy, saw PyTorch (the first tab) on every page without a NumPy tab (chapter 4).
// Here every choice is also put first in a short list in localStorage, and each
// framework tab-set opens on the most recently chosen framework it has.
(() => {
  const KEY = "xentlib-framework-preference";
  const read = () => {
    try { return JSON.parse(window.localStorage.getItem(KEY)) || []; } catch (e) { return []; }
  };
  const write = (list) => {
    try { window.localStorage.setItem(KEY, JSON.stringify(list)); } catch (e) { /* no storage */ }
  };
  const labelOf = (input) => input.nextElementSibling;
  const apply = () => {
    const preference = read();
    document.querySelectorAll(".sd-tab-set.framework-tabs").forEach((set) => {
      const inputs = Array.from(set.querySelectorAll(":scope > input"));
      const ids = inputs.map((i) => labelOf(i).dataset.syncId);
      const wanted = preference.find((id) => ids.includes(id));
      if (wanted) inputs[ids.indexOf(wanted)].checked = true;
    });
  };
  const remember = (event) => {
    const input = event.target;
    if (!(input instanceof HTMLInputElement) || !input.checked) return;
    if (!input.parentElement.classList.contains("framework-tabs")) return;
    const id = labelOf(input).dataset.syncId;
    write([id, ...read().filter((other) => other !== id)]);
  };
  document.addEventListener("DOMContentLoaded", () => {
    apply();
    document.addEventListener("change", remember, true);
  });
})();
