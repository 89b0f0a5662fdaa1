// cellbench web pages: live station table over the WebSocket, plots with uPlot, control
// forms. No build step, no dependencies beyond uPlot (vendored beside this file).
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const ROLE = document.querySelector('meta[name="role"]').content;
const LIVE_POINTS = 3600;  // samples kept in the live plot

async function api(method, url, body) {
  const options = {method, headers: {"X-CSRF-Token": CSRF}, credentials: "same-origin"};
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(url, options);
  const data = await response.json();
  if (!response.ok) throw new Error(data.message || response.statusText);
  return data;
}

function fmt(value, digits) {
  return value === null || value === undefined ? "" : Number(value).toPrecision(digits);
}

function plotWidth(element) {
  return Math.max(300, element.clientWidth || element.parentElement.clientWidth - 20);
}

// ---- the station page ---------------------------------------------------------------------

function stationPage(table) {
  const rows = new Map();
  for (const row of table.tBodies[0].rows) rows.set(Number(row.dataset.channel), row);
  const status = document.getElementById("live-status");
  const plotted = {channel: null, data: [[], [], [], []], plot: null};

  function actions(row, state) {
    const cell = row.querySelector(".actions");
    cell.textContent = "";
    if (ROLE !== "operator") return;
    const allowed = {running: ["pause", "next", "stop"], paused: ["resume", "next", "stop"],
                     idle: []}[state] || [];
    for (const action of allowed) {
      const button = document.createElement("button");
      button.textContent = action;
      button.className = action;
      button.onclick = async (event) => {
        event.stopPropagation();
        try {
          await api("POST", `/api/channels/${row.dataset.channel}/${action}`);
        } catch (err) {
          alert(err.message);
        }
      };
      cell.appendChild(button);
    }
  }

  let alarmOf = new Map();  // test id: its latest alarm's message

  function markAlarm(row) {
    const link = row.querySelector(".test a");
    const message = link ? alarmOf.get(Number(link.textContent)) : undefined;
    row.classList.toggle("alarm", message !== undefined);
    row.title = message || "";
  }

  function showState(view) {
    const row = rows.get(view.number);
    if (!row) return;
    row.className = view.state;
    row.querySelector(".state").textContent = view.state;
    const test = row.querySelector(".test");
    test.textContent = "";
    if (view.test_id !== null) {
      const link = document.createElement("a");
      link.href = `/stations/${encodeURIComponent(STATION)}/tests/${view.test_id}`;
      link.textContent = view.test_id;
      test.appendChild(link);
    }
    row.querySelector(".battery").textContent = view.battery || "";
    row.querySelector(".chamber").textContent = view.chamber || "";
    row.querySelector(".step").textContent = `${view.step_no} ${view.step_text}`;
    row.querySelector(".cycle").textContent = view.cycle;
    showValues(row, view.voltage_v, view.current_a, view.temperature_c);
    markAlarm(row);
    actions(row, view.state);
    filter();
  }

  function showValues(row, v, i, t) {
    row.querySelector(".v").textContent = fmt(v, 5);
    row.querySelector(".i").textContent = fmt(i, 4);
    row.querySelector(".t").textContent = fmt(t, 3);
  }

  function filter() {
    const state = document.getElementById("state-filter").value;
    const battery = document.getElementById("battery-filter").value.toLowerCase();
    const chamber = document.getElementById("chamber-filter").value.toLowerCase();
    const text = document.getElementById("search").value.toLowerCase();
    const has = (row, cls, wanted) =>
      !wanted || row.querySelector(cls).textContent.toLowerCase().includes(wanted);
    for (const row of rows.values()) {
      const shown = (!state || row.classList.contains(state)) &&
        has(row, ".battery", battery) && has(row, ".chamber", chamber) &&
        (!text || row.textContent.toLowerCase().includes(text));
      row.hidden = !shown;
    }
  }
  for (const id of ["state-filter", "battery-filter", "chamber-filter", "search"]) {
    document.getElementById(id).oninput = filter;
  }

  function choose(channel) {
    plotted.channel = channel;
    plotted.data = [[], [], [], []];
    document.getElementById("plot-channel").textContent = channel;
    const box = document.getElementById("live-plot");
    if (!plotted.plot) {
      plotted.plot = new uPlot({
        width: plotWidth(box), height: 260, scales: {x: {time: false}},
        axes: [{label: "test time / s"}, {label: "U / V", scale: "V"},
               {label: "I / A", scale: "A", side: 1, grid: {show: false}}],
        series: [{}, {label: "U / V", scale: "V", stroke: "#1f77b4"},
                 {label: "I / A", scale: "A", stroke: "#d62728"},
                 {label: "T / °C", scale: "C", stroke: "#2ca02c"}],
      }, plotted.data, box);
    } else {
      plotted.plot.setData(plotted.data);
    }
  }
  for (const [channel, row] of rows) row.onclick = () => choose(channel);

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/api/live`);
    let fields = null;
    socket.onopen = () => { status.textContent = "live"; status.className = "ok"; };
    socket.onclose = () => {
      status.textContent = "disconnected, retrying…";
      status.className = "error";
      setTimeout(connect, 2000);
    };
    socket.onmessage = (message) => {
      const data = JSON.parse(message.data);
      if (data.type === "hello") {
        fields = data.fields;
        data.channels.forEach(showState);
      } else if (data.type === "channels") {
        data.channels.forEach(showState);
      } else if (data.type === "samples") {
        for (const r of data.rows) {
          const row = rows.get(r[0]);
          if (row) showValues(row, r[4], r[5], r[6]);
          if (r[0] === plotted.channel) {
            const d = plotted.data;
            d[0].push(r[3]); d[1].push(r[4]); d[2].push(r[5]); d[3].push(r[6]);
            if (d[0].length > LIVE_POINTS) d.forEach((column) => column.shift());
          }
        }
        if (plotted.plot && data.rows.some((r) => r[0] === plotted.channel)) {
          plotted.plot.setData(plotted.data);
        }
        document.body.dataset.samples = String(
          Number(document.body.dataset.samples || 0) + data.rows.length);
      }
    };
  }
  connect();
  for (const [, row] of rows) actions(row, row.className);

  async function alarms() {
    // A row is highlighted while its current test has an alarm event; hover shows it.
    try {
      const events = await api("GET", `/api/stations/${encodeURIComponent(STATION)}/events` +
                               "?kind=alarm&limit=500");
      alarmOf = new Map(events.map((e) => [e.test_id, e.message]));
      for (const row of rows.values()) markAlarm(row);
    } catch (err) {
      status.textContent = `alarms: ${err.message}`;
    }
  }
  alarms();
  setInterval(alarms, 10000);

  api("GET", "/api/plans").then((data) => {
    for (const select of document.querySelectorAll("select.plans")) {
      for (const plan of data.plans) {
        const option = document.createElement("option");
        option.textContent = plan;
        select.appendChild(option);
      }
    }
  });
  planForm("start", "start-error", (form, body) =>
    api("POST", `/api/channels/${form.channel.value}/start`, body)
      .then((started) => `started test ${started.test_id}`));
  planForm("queue-form", "queue-error", (form, body) =>
    api("POST", "/api/queue", {...body, channel: Number(form.channel.value)})
      .then((queued) => { showQueue(); return `queued as entry ${queued.entry_id}`; }));
  showQueue();
  setInterval(showQueue, 10000);
  batteries();
}

// A form of a plan for a channel: what `send` answers, or the station's refusal (a bad plan
// names its file, line and field), is shown under it.
function planForm(id, errorId, send) {
  const form = document.getElementById(id);
  if (!form) return;
  form.onsubmit = async (event) => {
    event.preventDefault();
    const error = document.getElementById(errorId);
    error.textContent = "";
    const body = {plan: form.plan.value};
    if (form.battery.value) body.battery = form.battery.value;
    try {
      error.textContent = await send(form, body);
      error.className = "ok";
    } catch (err) {
      error.textContent = err.message;
      error.className = "error";
    }
  };
}

function cells(row, values) {
  for (const value of values) {
    const cell = row.insertCell();
    cell.textContent = value === null || value === undefined ? "" : value;
  }
}

async function showQueue() {
  const body = document.querySelector("#queue tbody");
  const entries = await api("GET", "/api/queue");
  body.textContent = "";
  for (const e of entries) {
    const row = body.insertRow();
    row.dataset.entry = e.id;
    cells(row, [e.id, e.channel, (e.plan_source || "").split("/").pop(), e.battery, e.status,
                e.test_id]);
    const cell = row.insertCell();
    if (ROLE === "operator" && e.status === "queued") {
      const button = document.createElement("button");
      button.textContent = "cancel";
      button.className = "cancel";
      button.onclick = async () => {
        try {
          await api("DELETE", `/api/queue/${e.id}`);
        } catch (err) {
          alert(err.message);
        }
        showQueue();
      };
      cell.appendChild(button);
    }
  }
}

// ---- batteries: the registry, registered and edited from one form -------------------------

const BATTERY_FIELDS = ["chemistry", "nominal_capacity_ah", "nominal_voltage_v",
                        "voltage_max_v", "voltage_min_v", "current_max_charge_a",
                        "current_max_discharge_a", "temperature_max_c"];

async function batteries() {
  const body = document.querySelector("#batteries tbody");
  const form = document.getElementById("battery-form");
  const names = document.getElementById("battery-names");
  let editing = null;  // the name of the battery the form edits; null: a new one

  function choose(battery) {
    editing = battery ? battery.name : null;
    form.name.value = battery ? battery.name : "";
    form.name.readOnly = battery !== null;
    for (const field of BATTERY_FIELDS) {
      form[field].value = battery && battery[field] !== null ? battery[field] : "";
    }
    document.getElementById("battery-title").textContent =
      battery ? `Edit battery ${battery.name}` : "Register a battery";
    document.getElementById("battery-save").textContent = battery ? "save" : "register";
    document.getElementById("battery-error").textContent = "";
  }

  async function show() {
    const list = await api("GET", "/api/batteries");
    body.textContent = "";
    names.textContent = "";
    for (const b of list) {
      const row = body.insertRow();
      row.dataset.battery = b.name;
      cells(row, [b.name, ...BATTERY_FIELDS.map((field) => b[field])]);
      const cell = row.insertCell();
      if (form) {
        const button = document.createElement("button");
        button.textContent = "edit";
        button.className = "edit";
        button.onclick = () => choose(b);
        cell.appendChild(button);
      }
      const option = document.createElement("option");
      option.value = b.name;
      names.appendChild(option);
    }
  }
  await show();
  if (!form) return;
  document.getElementById("battery-new").onclick = () => choose(null);
  form.onsubmit = async (event) => {
    event.preventDefault();
    const error = document.getElementById("battery-error");
    const values = {chemistry: form.chemistry.value};
    for (const field of BATTERY_FIELDS.slice(1)) {
      // An empty field is no limit; the server's rules check the rest.
      values[field] = form[field].value === "" ? null : Number(form[field].value);
    }
    try {
      if (editing === null) {
        await api("POST", "/api/batteries", {name: form.name.value, ...values});
        error.textContent = `registered ${form.name.value}`;
      } else {
        await api("PATCH", `/api/batteries/${encodeURIComponent(editing)}`, values);
        error.textContent = `saved ${editing}`;
      }
      error.className = "ok";
      await show();
    } catch (err) {
      error.textContent = err.message;
      error.className = "error";
    }
  };
}

// ---- the test page ------------------------------------------------------------------------

function minMaxSeries(data, columns) {
  // One x per bucket (its midpoint); for each column its max then its min as two lines.
  const x = data.t_min.map((t, k) => (t + data.t_max[k]) / 2);
  const out = [x];
  for (const column of columns) {
    out.push(data[`${column}_max`]);
    out.push(data[`${column}_min`]);
  }
  return out;
}

function testPage(box) {
  const url = box.dataset.series;
  const columns = ["voltage_v", "current_a", "temperature_c"];
  const styles = [["U / V", "V", "#1f77b4"], ["I / A", "A", "#d62728"],
                  ["T / °C", "C", "#2ca02c"]];
  let plot = null;
  let marks = [];

  async function load(start, end) {
    const buckets = Math.min(5000, plotWidth(box));
    let query = `?columns=${columns.join(",")}&buckets=${buckets}`;
    if (start !== undefined) query += `&start_s=${start}&end_s=${end}`;
    const data = await api("GET", url + query);
    marks = data.marks;
    const series = minMaxSeries(data, columns);
    if (!plot) {
      const specs = [{}];
      for (const [label, scale, stroke] of styles) {
        specs.push({label: `${label} max`, scale, stroke});
        specs.push({label: `${label} min`, scale, stroke, dash: [4, 2]});
      }
      plot = new uPlot({
        width: plotWidth(box), height: 360, scales: {x: {time: false}},
        axes: [{label: "test time / s"}, {label: "U / V", scale: "V"},
               {label: "I / A", scale: "A", side: 1, grid: {show: false}}],
        series: specs,
        cursor: {drag: {x: true, y: false}},
        hooks: {
          setSelect: [(u) => {
            if (u.select.width < 2) return;
            const a = u.posToVal(u.select.left, "x");
            const b = u.posToVal(u.select.left + u.select.width, "x");
            u.setSelect({left: 0, width: 0}, false);
            load(a, b);
          }],
          draw: [(u) => {  // step and cycle marks
            const ctx = u.ctx;
            ctx.save();
            ctx.strokeStyle = "rgba(0,0,0,0.15)";
            for (const mark of marks) {
              const px = u.valToPos(mark.test_time_s, "x", true);
              ctx.beginPath();
              ctx.moveTo(px, u.bbox.top);
              ctx.lineTo(px, u.bbox.top + u.bbox.height);
              ctx.stroke();
            }
            ctx.restore();
          }],
        },
      }, series, box);
      box.addEventListener("dblclick", () => load());
    } else {
      plot.setData(series);
    }
    box.dataset.points = String(series[0].length);
  }
  load();

  const table = document.getElementById("cycles");
  api("GET", table.dataset.cycles).then((cycles) => {
    const fade = document.getElementById("fade-plot");
    if (!cycles.length) return;
    new uPlot({
      width: plotWidth(fade), height: 220, scales: {x: {time: false}},
      axes: [{label: "cycle"}, {label: "discharge / Ah"}],
      series: [{}, {label: "discharge / Ah", stroke: "#9467bd", points: {show: true}}],
    }, [cycles.map((c) => c.cycle), cycles.map((c) => c.discharge_ah)], fade);
  });
}

// ---- the tests list: compare curves -------------------------------------------------------

function testsPage() {
  const button = document.getElementById("compare");
  if (!button) return;
  button.onclick = async () => {
    const chosen = [...document.querySelectorAll("input.compare:checked")].map((c) => c.value);
    if (!chosen.length) return;
    const tables = [];
    for (const key of chosen) {
      const cut = key.lastIndexOf("/");  // station names may hold a slash, ids never
      const station = key.slice(0, cut);
      const id = key.slice(cut + 1);
      const data = await api("GET", `/api/stations/${encodeURIComponent(station)}/tests/${id}` +
                             "/series?columns=voltage_v&buckets=1000");
      const x = data.t_min.map((t, k) => (t + data.t_max[k]) / 2);
      tables.push([x, data.voltage_v_max]);
    }
    const box = document.getElementById("compare-plot");
    box.textContent = "";
    new uPlot({
      width: plotWidth(box), height: 320, scales: {x: {time: false}},
      axes: [{label: "test time / s"}, {label: "U / V"}],
      series: [{}, ...chosen.map((key, k) => ({
        label: key, stroke: `hsl(${(k * 137) % 360},70%,40%)`, spanGaps: true}))],
    }, uPlot.join(tables), box);
  };
}

const STATION = document.querySelector(".brand").textContent.replace(/^cellbench · /, "");
const channelsTable = document.getElementById("channels");
if (channelsTable) stationPage(channelsTable);
const testPlot = document.getElementById("test-plot");
if (testPlot) testPage(testPlot);
testsPage();
