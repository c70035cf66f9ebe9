// The jobs page, live: each `job` event of the notification stream updates its row.
//
// notifications.js owns the stream (one per browser, shared by its tabs) and re-dispatches
// every `job` event {id, kind, title, state, done, total, rate, eta_seconds, result_url,
// error, seq} on window as "streamsite:job". A row keeps the seq it shows: an older version of
// the job (a relay that arrives late) never undoes a newer one. Without JavaScript the page
// is the same list, as of its rendering.

/** The states as pages show them (also the home dashboard's, home.js). */
export const LABELS = {
  queued: "Queued",
  running: "Running",
  succeeded: "Succeeded",
  failed: "Failed",
  cancelled: "Cancelled",
};
export const ACTIVE = new Set(["queued", "running"]);

const list = document.querySelector("[data-testid=job-list]");

function csrfToken() {
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  return input ? input.value : "";
}

function describe(job) {
  let text = `${job.done}`;
  if (job.total !== null && job.total !== undefined) text += ` of ${job.total}`;
  text += " rows";
  if (job.rate) text += ` · ${job.rate} rows/s`;
  if (job.eta_seconds !== null && job.eta_seconds !== undefined) text += ` · ${job.eta_seconds} s left`;
  return text;
}

function cancelForm(id) {
  const form = document.createElement("form");
  form.method = "post";
  form.action = list.dataset.cancelUrlTemplate.replace("/0/", `/${id}/`);
  form.className = "inline";
  form.dataset.jobCancel = "";
  const token = document.createElement("input");
  token.type = "hidden";
  token.name = "csrfmiddlewaretoken";
  token.value = csrfToken();
  const button = document.createElement("button");
  button.type = "submit";
  button.textContent = "Cancel";
  form.append(token, button);
  return form;
}

/** A row for a job this page was not rendered with (started in another tab). */
function newRow(job) {
  const row = document.createElement("li");
  row.id = `job-${job.id}`;
  row.dataset.jobId = String(job.id);
  row.dataset.jobSeq = "0";
  const title = document.createElement("div");
  title.className = "job-title";
  title.textContent = `${job.title || job.kind} `;
  const state = document.createElement("span");
  state.className = "job-state";
  state.dataset.jobState = "";
  title.append(state);
  const bar = document.createElement("progress");
  bar.dataset.jobBar = "";
  const meta = document.createElement("div");
  meta.className = "job-meta";
  meta.dataset.jobMeta = "";
  const actions = document.createElement("div");
  actions.className = "job-actions";
  actions.dataset.jobActions = "";
  row.append(title, bar, meta, actions);
  list.prepend(row);
  document.querySelector("[data-jobs-empty]")?.remove();
  return row;
}

function show(job) {
  const id = Number(job.id);
  if (!Number.isSafeInteger(id) || id <= 0 || !list) return;
  const row = document.getElementById(`job-${id}`) || newRow(job);
  if (Number(job.seq) <= Number(row.dataset.jobSeq || 0)) return;
  row.dataset.jobSeq = String(job.seq);
  row.className = `job state-${job.state}`;
  row.querySelector("[data-job-state]").textContent = LABELS[job.state] || job.state;
  const bar = row.querySelector("[data-job-bar]");
  if (job.total !== null && job.total !== undefined) {
    bar.max = Math.max(1, job.total);
    bar.value = job.done;
  } else if (!ACTIVE.has(job.state)) {
    bar.max = 1;
    bar.value = job.done ? 1 : 0;
  }
  bar.textContent = String(job.done);
  row.querySelector("[data-job-meta]").textContent = describe(job);
  let error = row.querySelector("[data-job-error]");
  if (job.error) {
    if (!error) {
      error = document.createElement("div");
      error.className = "job-error";
      error.dataset.jobError = "";
      row.querySelector("[data-job-actions]").before(error);
    }
    error.textContent = job.error;
  }
  const actions = row.querySelector("[data-job-actions]");
  if (ACTIVE.has(job.state)) {
    if (!actions.querySelector("[data-job-cancel]")) actions.replaceChildren(cancelForm(id));
  } else if (job.result_url && job.result_url.startsWith("/jobs/")) {
    const link = document.createElement("a");
    link.href = job.result_url;
    link.textContent = "Download";
    link.dataset.jobDownload = "";
    actions.replaceChildren(link);
  } else {
    actions.replaceChildren();
  }
}

if (list) window.addEventListener("streamsite:job", (event) => show(event.detail));
