// The playground's chat page: plain JavaScript, no build step.
"use strict";

const state = {
  bot: null, users: [], guilds: [], commands: [], messages: new Map(),
  channel: null, guild: null, command: null, shardCount: 1,
  settled: new Set(),  // interactions whose outcome arrived (maybe before the POST returned)
};
const $ = (id) => document.getElementById(id);
const MAX_EVENTS = 300;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

async function api(path, body) {
  const response = await fetch(`/playground/api/${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

function say(text, failed = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("failed", failed);
}

// --- text ------------------------------------------------------------------------------------

function userName(id) {
  const user = state.users.find((u) => u.id === id) || (state.bot && state.bot.id === id ? state.bot : null);
  return user ? (user.global_name || user.username) : null;
}

// Discord markdown, the small part bots use: **bold**, `code`, and <@id> mentions.
function renderText(text, mentions) {
  const names = new Map((mentions || []).map((m) => [m.id, m.name]));
  const out = [];
  const pattern = /<@!?(\d+)>|\*\*([^*]+)\*\*|`([^`]+)`/g;
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    out.push(text.slice(last, match.index));
    if (match[1]) out.push(el("span", { class: "mention" }, `@${names.get(match[1]) || userName(match[1]) || match[1]}`));
    else if (match[2]) out.push(el("strong", {}, match[2]));
    else out.push(el("code", {}, match[3]));
    last = match.index + match[0].length;
  }
  out.push(text.slice(last));
  return out;
}

// --- guilds and channels ---------------------------------------------------------------------

function renderGuilds() {
  const nav = $("guilds");
  nav.replaceChildren();
  for (const guild of state.guilds) {
    nav.append(el("h3", {}, guild.name, " ", el("small", {}, `shard ${guild.shard} · ${guild.members} members`)));
    for (const channel of guild.channels) {
      if (channel.type === 0) {
        nav.append(el("button", {
          type: "button", "data-channel": channel.id,
          "aria-current": channel.id === state.channel ? "true" : "false",
          onclick: () => selectChannel(guild, channel),
        }, `# ${channel.name}`));
      } else if (channel.type === 2) {
        nav.append(el("div", { class: "voice" }, `${channel.name} (voice)`));
      }
    }
  }
}

function selectChannel(guild, channel) {
  state.guild = guild;
  state.channel = channel.id;
  $("channel-title").textContent = `#${channel.name} · ${guild.name}`;
  renderGuilds();
  renderMessages();
  $("composer").focus();
}

// --- messages --------------------------------------------------------------------------------

// Only web links are followed from the page (a bot could send javascript: in a link button).
function safeUrl(url) {
  try {
    const parsed = new URL(String(url));
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch { return null; }
}

const text = (value) => (value === undefined || value === null ? "" : String(value));

function renderEmbed(embed) {
  const colour = Number.isInteger(embed.color) && embed.color >= 0 && embed.color <= 0xffffff
    ? `#${embed.color.toString(16).padStart(6, "0")}` : null;
  return el("div", { class: "embed", style: colour ? `border-left-color:${colour}` : null },
    embed.author && embed.author.name ? el("div", { class: "embed-author" }, text(embed.author.name)) : null,
    embed.title ? el("div", { class: "title" }, text(embed.title)) : null,
    embed.description ? el("div", { class: "description" }, renderText(text(embed.description))) : null,
    Array.isArray(embed.fields) && embed.fields.length ? el("div", { class: "fields" }, embed.fields.map((f) =>
      el("div", { class: "field" }, el("div", { class: "field-name" }, text(f.name)), el("div", {}, renderText(text(f.value)))))) : null,
    embed.footer && embed.footer.text ? el("div", { class: "footer" }, text(embed.footer.text)) : null);
}

function renderComponent(message, component) {
  if (component.type === 1) {
    return el("div", { class: "action-row" }, (component.components || []).map((c) => renderComponent(message, c)));
  }
  if (component.type === 2) {
    if (component.style === 5) {
      const href = safeUrl(component.url);
      return href
        ? el("a", { class: "button style-5", href, target: "_blank", rel: "noopener noreferrer" }, text(component.label) || "Link")
        : el("span", { class: "unsupported" }, `[link refused: ${text(component.url).slice(0, 60)}]`);
    }
    return el("button", {
      type: "button", class: `style-${component.style || 2}`, disabled: !!component.disabled,
      "data-custom-id": component.custom_id,
      onclick: () => click(message, component.custom_id),
    }, text(component.label) || "…");
  }
  if (component.type === 3) {
    const select = el("select", {
      "aria-label": component.placeholder || "Choose", "data-custom-id": component.custom_id,
      disabled: !!component.disabled,
      onchange: (event) => click(message, component.custom_id, [event.target.value]),
    }, el("option", { value: "", disabled: true, selected: true }, component.placeholder || "Choose…"),
    (component.options || []).map((o) => el("option", { value: o.value }, o.label)));
    return select;
  }
  return el("span", { class: "unsupported" }, `[component type ${component.type}]`);
}

function renderMessage(message) {
  const mine = message.author.bot;
  const ephemeral = (message.flags & 64) !== 0;
  return el("li", { class: "message", "data-message-id": message.id, "data-author": message.author.name },
    message.invoked ? el("div", { class: "invoked" }, `↳ ${message.invoked}`) : null,
    el("div", { class: "head" },
      el("span", { class: "author" }, message.author.name),
      mine ? el("span", { class: "bot-tag" }, "BOT") : null,
      el("time", { datetime: message.timestamp }, new Date(message.timestamp).toLocaleTimeString()),
      message.edited ? el("span", { class: "edited" }, " (edited)") : null,
      ephemeral ? el("span", { class: "ephemeral" }, " · only you can see this") : null),
    message.content ? el("div", { class: "content" }, renderText(message.content, message.mentions)) : null,
    (message.embeds || []).map(renderEmbed),
    message.components && message.components.length
      ? el("div", { class: "components" }, message.components.map((c) => renderComponent(message, c))) : null);
}

function renderMessages() {
  const list = $("messages");
  const messages = state.messages.get(state.channel) || [];
  list.replaceChildren(...messages.map(renderMessage));
  list.scrollTop = list.scrollHeight;
}

function onMessage(kind, message) {
  const list = state.messages.get(message.channel_id) || [];
  const index = list.findIndex((m) => m.id === message.id);
  if (kind === "delete") { if (index >= 0) list.splice(index, 1); }
  else if (index >= 0) list[index] = message;
  else list.push(message);
  state.messages.set(message.channel_id, list.slice(-200));
  if (message.channel_id === state.channel) renderMessages();
}

async function click(message, customId, values) {
  try {
    await api("components", {
      channel_id: message.channel_id, message_id: message.id, custom_id: customId,
      user_id: $("user").value, values,
    });
  } catch (error) { say(error.message, true); }
}

// --- slash commands --------------------------------------------------------------------------

function showSlashMenu(typed) {
  const menu = $("slash-menu");
  const name = typed.slice(1).split(" ")[0].toLowerCase();
  const found = state.commands.filter((c) => c.name.startsWith(name));
  if (!found.length) { menu.hidden = true; return; }
  menu.replaceChildren(...found.map((command) => el("button", {
    type: "button", role: "option", "data-command": command.name, onclick: () => chooseCommand(command),
  }, `/${command.name}`, el("small", {}, command.description || ""))));
  menu.hidden = false;
}

function optionField(option, prefix = "") {
  const id = `opt-${prefix}${option.name}`;
  let input;
  if (option.choices && option.choices.length) {
    input = el("select", { id, name: option.name }, option.required ? null : el("option", { value: "" }, "—"),
      option.choices.map((c) => el("option", { value: String(c.value) }, c.name)));
  } else if (option.type === 5) {
    input = el("select", { id, name: option.name }, el("option", { value: "" }, "—"),
      el("option", { value: "true" }, "True"), el("option", { value: "false" }, "False"));
  } else if (option.type === 6 || option.type === 9) {
    input = el("select", { id, name: option.name }, option.required ? null : el("option", { value: "" }, "—"),
      state.users.map((u) => el("option", { value: u.id }, u.username)));
  } else if (option.type === 7) {
    input = el("select", { id, name: option.name }, option.required ? null : el("option", { value: "" }, "—"),
      (state.guild ? state.guild.channels : []).map((c) => el("option", { value: c.id }, `#${c.name}`)));
  } else {
    const numeric = option.type === 4 || option.type === 10;
    input = el("input", {
      id, name: option.name, type: numeric ? "number" : "text",
      step: option.type === 10 ? "any" : null, min: option.min_value, max: option.max_value,
      list: option.autocomplete ? `${id}-list` : null,
    });
    if (option.autocomplete) input.addEventListener("input", () => autocomplete(option, input));
  }
  input.dataset.type = option.type;
  return el("label", { for: id, class: option.required ? "required" : null },
    `${option.name}${option.description ? ` — ${option.description}` : ""}`, input,
    option.autocomplete ? el("datalist", { id: `${id}-list` }) : null);
}

function chooseCommand(command) {
  state.command = command;
  $("slash-menu").hidden = true;
  $("command").hidden = false;
  $("command-chip").textContent = `/${command.name}`;
  const box = $("command-options");
  box.replaceChildren();
  const subcommands = (command.options || []).filter((o) => o.type === 1);
  if (subcommands.length) {
    const picker = el("select", { id: "opt-subcommand", "aria-label": "Subcommand" },
      subcommands.map((s) => el("option", { value: s.name }, s.name)));
    const fields = el("div", { class: "options" });
    const fill = () => {
      const chosen = subcommands.find((s) => s.name === picker.value);
      fields.replaceChildren(...(chosen.options || []).map((o) => optionField(o, "sub-")));
    };
    picker.addEventListener("change", fill);
    box.append(el("label", {}, "subcommand", picker), fields);
    fill();
  } else {
    box.append(...(command.options || []).map((o) => optionField(o)));
  }
  const composer = $("composer");
  composer.value = "";
  composer.placeholder = `Press Enter to run /${command.name}`;
  const first = box.querySelector("input, select");
  (first || composer).focus();
}

function clearCommand() {
  state.command = null;
  $("command").hidden = true;
  $("command-options").replaceChildren();
  $("composer").placeholder = "Message, !command or /command";
}

function optionValue(input) {
  const type = Number(input.dataset.type);
  const raw = input.value.trim();
  if (raw === "") return undefined;
  if (type === 4) return Number.parseInt(raw, 10);
  if (type === 10) return Number.parseFloat(raw);
  if (type === 5) return raw === "true";
  return raw;
}

function collectOptions(focused) {
  const box = $("command-options");
  const inputs = [...box.querySelectorAll("input[name], select[name]")];
  const values = [];
  for (const input of inputs) {
    const value = optionValue(input);
    if (value === undefined && input !== focused) continue;
    const option = { name: input.name, type: Number(input.dataset.type), value: value === undefined ? "" : value };
    if (input === focused) option.focused = true;
    values.push(option);
  }
  const picker = $("opt-subcommand");
  return picker ? [{ type: 1, name: picker.value, options: values }] : values;
}

async function autocomplete(option, input) {
  if (!state.command) return;
  try {
    const { choices } = await api("autocomplete", {
      channel_id: state.channel, user_id: $("user").value, name: state.command.name,
      options: collectOptions(input),
    });
    const list = document.getElementById(input.getAttribute("list"));
    list.replaceChildren(...choices.map((c) => el("option", { value: String(c.value) }, c.name)));
  } catch (error) { say(error.message, true); }
}

// --- sending ---------------------------------------------------------------------------------

async function send(event) {
  event.preventDefault();
  const composer = $("composer");
  try {
    if (state.command) {
      const name = state.command.name;
      const { id } = await api("commands", {
        channel_id: state.channel, user_id: $("user").value, name, options: collectOptions(null),
      });
      if (!state.settled.has(id)) say(`/${name} sent…`);
      clearCommand();
    } else {
      const content = composer.value;
      if (!content.trim()) return;
      if (content.startsWith("/")) {
        const command = state.commands.find((c) => c.name === content.slice(1).trim().split(" ")[0]);
        if (command) { chooseCommand(command); return; }
      }
      await api("messages", { channel_id: state.channel, user_id: $("user").value, content });
      composer.value = "";
      say("");
    }
    $("slash-menu").hidden = true;
    composer.focus();
  } catch (error) { say(error.message, true); }
}

// --- side panel ------------------------------------------------------------------------------

function renderShards(shards) {
  const body = $("shards").tBodies[0];
  body.replaceChildren(...shards.map((s) => el("tr", { "data-shard": s.id },
    el("td", {}, `${s.id} / ${s.count}`), el("td", {}, el("code", {}, s.session)), el("td", {}, String(s.seq)),
    el("td", { class: s.connected ? "up" : "down" }, s.connected ? "connected" : "disconnected"))));
}

function renderCounters(counters) {
  const parts = ["identify", "resume", "close", "rest", "ratelimit", "heartbeat"]
    .map((k) => `${k === "ratelimit" ? "429s" : k}: ${counters[k] || 0}`);
  $("counters").textContent = parts.join(" · ");
}

function renderProcesses(processes) {
  if (!processes) return;
  $("processes-section").hidden = false;
  $("processes").replaceChildren(...processes.map((p) => el("li", { "data-process": p.name },
    el("span", {}, `${p.name} `, el("small", {}, p.state === "running" ? `pid ${p.pid}` : p.state)),
    p.state === "running" ? [
      el("button", { type: "button", onclick: () => scenario("stop", { process: p.name }) }, "SIGTERM"),
      el("button", { type: "button", onclick: () => scenario("kill", { process: p.name }) }, "kill -9"),
    ] : el("button", { type: "button", onclick: () => scenario("start", { process: p.name }) }, "start"))));
}

function addEvent(entry) {
  const list = $("events");
  const time = new Date(entry.at * 1000).toLocaleTimeString();
  list.prepend(el("li", { class: entry.kind, "data-kind": entry.kind }, `${time} ${entry.text}`));
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
}

async function scenario(name, body = {}) {
  try {
    const result = await api(`scenarios/${name}`, body);
    if (name === "add-guild") await reload();
    say(result.done || `${name}: done`);
  } catch (error) { say(error.message, true); }
}

function fillShardSelects() {
  for (const select of document.querySelectorAll(".shard-select")) {
    const current = select.value;
    select.replaceChildren(...Array.from({ length: state.shardCount }, (_, i) => el("option", { value: String(i) }, String(i))));
    if (current) select.value = current;
  }
}

// --- live feed -------------------------------------------------------------------------------

function connectLive() {
  const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/playground/live`);
  socket.binaryType = "arraybuffer";
  socket.onmessage = (event) => {
    const data = JSON.parse(typeof event.data === "string" ? event.data : new TextDecoder().decode(event.data));
    if (data.type === "message") onMessage(data.kind, data.message);
    else if (data.type === "panel") {
      addEvent(data);
      if (data.shards) renderShards(data.shards);
      if (data.counters) renderCounters(data.counters);
      if (data.processes) renderProcesses(data.processes);
    } else if (data.type === "interaction") {
      if (state.settled.size > 1000) state.settled.clear();
      state.settled.add(data.id);
      if (data.state === "failed") say(`${data.what}: The application did not respond`, true);
      else if (data.state === "deferred") say(`${data.what}: Shardline is thinking…`);
      else say(`${data.what}: ${data.state}`);
    }
  };
  socket.onclose = () => setTimeout(connectLive, 1000);
}

async function reload() {
  const data = await api("state");
  state.bot = data.bot;
  state.users = data.users;
  state.guilds = data.guilds;
  state.commands = data.commands;
  state.shardCount = Math.max(1, ...data.guilds.map((g) => g.shard + 1), data.shards.length);
  state.messages = new Map(Object.entries(data.messages));
  const userSelect = $("user");
  const chosen = userSelect.value;
  userSelect.replaceChildren(...state.users.map((u) => el("option", { value: u.id }, u.username)));
  if (chosen) userSelect.value = chosen;
  if (!state.channel && state.guilds.length) {
    const guild = state.guilds[0];
    selectChannel(guild, guild.channels.find((c) => c.type === 0));
  } else {
    state.guild = state.guilds.find((g) => g.channels.some((c) => c.id === state.channel)) || state.guild;
    renderGuilds();
    renderMessages();
  }
  renderShards(data.shards);
  renderCounters(data.counters);
  renderProcesses(data.processes);
  fillShardSelects();
  return data;
}

async function start() {
  const data = await reload();
  $("events").replaceChildren();
  for (const entry of data.panel) addEvent(entry);
  connectLive();
  // Commands appear once the workers have synced them; look again until they have.
  const refresh = setInterval(async () => {
    const fresh = await api("state");
    state.commands = fresh.commands;
    if (fresh.commands.length) clearInterval(refresh);
  }, 2000);
  const composer = $("composer");
  composer.addEventListener("input", () => {
    if (!state.command && composer.value.startsWith("/")) showSlashMenu(composer.value);
    else $("slash-menu").hidden = true;
  });
  composer.addEventListener("keydown", (event) => {
    if (event.key === "Escape") { clearCommand(); $("slash-menu").hidden = true; }
  });
  $("composer-form").addEventListener("submit", send);
  $("add-guild").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    scenario("add-guild", { name: form.get("name"), members: Number(form.get("members")), shard: Number(form.get("shard")) });
  });
  for (const button of document.querySelectorAll("[data-scenario]")) {
    button.addEventListener("click", () => scenario(button.dataset.scenario, { shard: Number($("fault-shard").value) }));
  }
  $("show-rest").addEventListener("change", (event) => $("events").classList.toggle("hide-rest", !event.target.checked));
}

start().catch((error) => say(`The playground did not answer: ${error.message}`, true));
