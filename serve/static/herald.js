/* Herald browser client: receive in-browser notifications over WebSocket and ack each one.
 *
 * Plain script, no dependencies; defines window.Herald.
 *
 *   var conn = Herald.connect({
 *     url: "ws://host:port/ws?token=T",              // either a WebSocket URL as given,
 *     endpoint: "/v1/browser-endpoint", token: "T",  // or the endpoint that answers {"url"};
 *                                                    // token may be a function returning a
 *                                                    // token or a promise of one (refresh)
 *     onNotification: function (frame) {},  // {tag, type, title, content, priority}
 *     onStatus: function (state) {}         // connecting, connected, reconnecting,
 *   });                                     // unauthorized, closed
 *   conn.close();
 *
 * Each notification is acked ({"ack": tag}) right after onNotification returns, so the server
 * records it as delivered. A notification not acked before a disconnect is sent again on the
 * next connection: tags already shown are acked again but not shown twice. The socket
 * reconnects with exponential backoff and jitter (0.5 s doubling to 30 s) until close().
 * With an endpoint the URL is fetched again on every connect; a 401/403 from it (expired
 * token) stops the client with status "unauthorized".
 */
(function (global) {
  "use strict";

  var MIN_DELAY_MS = 500;
  var MAX_DELAY_MS = 30000;
  var HEARTBEAT_MS = 25000; // the browser cannot see a dead TCP link: ask for a pong
  var PONG_TIMEOUT_MS = 10000;
  var MAX_REMEMBERED = 1000;

  function Unauthorized() {}

  function connect(options) {
    var onNotification = options.onNotification || function () {};
    var onStatus = options.onStatus || function () {};
    var acked = new Set();
    var socket = null;
    var closed = false;
    var attempt = 0;
    var retryTimer = null;
    var heartbeatTimer = null;
    var pongTimer = null;

    function status(state) {
      try {
        onStatus(state);
      } catch (err) {
        console.error("Herald onStatus failed", err);
      }
    }

    function resolveToken() {
      var token = options.token;
      return Promise.resolve(typeof token === "function" ? token() : token);
    }

    function resolveUrl() {
      if (options.url) return Promise.resolve(options.url);
      return resolveToken().then(function (token) {
        var endpoint = options.endpoint || "/v1/browser-endpoint";
        var sep = endpoint.indexOf("?") < 0 ? "?" : "&";
        return fetch(endpoint + sep + "token=" + encodeURIComponent(token), {
          cache: "no-store",
          credentials: "same-origin",
        });
      }).then(function (response) {
        if (response.status === 401 || response.status === 403) throw new Unauthorized();
        if (!response.ok) throw new Error("browser endpoint answered " + response.status);
        return response.json();
      }).then(function (body) {
        if (!body || typeof body.url !== "string") throw new Error("no url in endpoint answer");
        return body.url;
      });
    }

    function open() {
      retryTimer = null;
      status(attempt === 0 ? "connecting" : "reconnecting");
      resolveUrl().then(function (url) {
        if (!closed) listen(new WebSocket(url));
      }).catch(function (err) {
        if (closed) return;
        if (err instanceof Unauthorized) {
          closed = true;
          status("unauthorized");
          return;
        }
        console.warn("Herald: cannot reach the browser endpoint", err);
        scheduleReconnect();
      });
    }

    function listen(ws) {
      socket = ws;
      ws.onopen = function () {
        attempt = 0;
        status("connected");
        startHeartbeat();
      };
      ws.onmessage = function (event) { receive(ws, event.data); };
      ws.onclose = function () {
        if (socket === ws) socket = null;
        stopHeartbeat();
        if (closed) return;
        scheduleReconnect();
      };
      // onerror is always followed by onclose, which reconnects.
    }

    function receive(ws, data) {
      var frame;
      try {
        frame = JSON.parse(data);
      } catch (err) {
        return;
      }
      if (!frame || typeof frame !== "object") return;
      if ("pong" in frame) {
        clearTimeout(pongTimer);
        return;
      }
      if (typeof frame.tag !== "string") return;
      if (!acked.has(frame.tag)) {
        try {
          onNotification(frame);
        } catch (err) {
          // Acked all the same: sending it again would fail the same way, forever.
          console.error("Herald onNotification failed", err);
        }
        remember(frame.tag);
      }
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ ack: frame.tag }));
    }

    function remember(tag) {
      acked.add(tag);
      if (acked.size > MAX_REMEMBERED) acked.delete(acked.values().next().value);
    }

    function scheduleReconnect() {
      var ceiling = Math.min(MAX_DELAY_MS, MIN_DELAY_MS * Math.pow(2, attempt));
      var delay = ceiling / 2 + Math.random() * (ceiling / 2); // jitter spreads a stampede
      attempt += 1;
      status("reconnecting");
      retryTimer = setTimeout(open, delay);
    }

    function startHeartbeat() {
      stopHeartbeat();
      heartbeatTimer = setInterval(function () {
        var ws = socket;
        if (!ws || ws.readyState !== WebSocket.OPEN) return;
        ws.send(JSON.stringify({ ping: Date.now() }));
        clearTimeout(pongTimer);
        pongTimer = setTimeout(function () { drop(ws); }, PONG_TIMEOUT_MS);
      }, HEARTBEAT_MS);
    }

    // A silent link: a browser's close() may wait long for a dead peer, so do not wait for it.
    function drop(ws) {
      ws.onclose = null;
      ws.onmessage = null;
      ws.close(4000, "no pong");
      if (socket === ws) socket = null;
      stopHeartbeat();
      if (!closed) scheduleReconnect();
    }

    function stopHeartbeat() {
      clearInterval(heartbeatTimer);
      clearTimeout(pongTimer);
    }

    function close() {
      if (closed && !socket) return;
      closed = true;
      clearTimeout(retryTimer);
      stopHeartbeat();
      if (socket) socket.close(1000, "client closed");
      socket = null;
      status("closed");
    }

    open();
    return { close: close };
  }

  global.Herald = { connect: connect };
})(window);
