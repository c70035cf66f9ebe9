// Folding parts of the page: the header's section menu ([data-nav-menu]) and a
// conversation page's side panels ([data-fold]) are <details> that fold away on narrow
// screens. On wide screens CSS (nav.css, conversation.css) shows the content of a closed
// <details> where the browser supports ::details-content; elsewhere this opens them, and
// closes them again when the screen narrows.

const WIDE = window.matchMedia("(min-width: 48rem)");
const folds = document.querySelectorAll("[data-nav-menu], [data-fold]");

if (folds.length && !CSS.supports("selector(::details-content)")) {
  const fit = () => {
    for (const fold of folds) fold.open = WIDE.matches;
  };
  fit();
  WIDE.addEventListener("change", fit);
}
