/* Herald browser client: receive in-browser notifications over WebSocket and ack each one;
 * read the user's inbox feed and mark what the user has seen as read.
 *
 * Plain script, no dependencies; defines window.Herald.
 *
 *   var conn = Herald.connect({
 *     url: "ws://host:port/ws?token=T",              // either a WebSocket URL as given,
 *     endpoint: "/v1/browser-endpoint", token: "T",  // or the endpoint that answers {"url"};
 *                                                    // token may be a function returning a
 *                                                    // token or a promise of one (refresh)
 *     feedUrl: "/v1/browser/notifications",  // the feed (full URL when Herald is elsewhere)
 *     onNotification: function (frame) {},  // {tag, type, title, content, priority}
 *     onStatus: function (state) {},        // connecting, connected, reconnecting,
 *                                           // unauthorized, closed
 *     onUnread: function (count) {},        // the user's unread count, after each answer of
 *                                           // feed/markRead/markAllRead
 *     readOnAck: false                      // true: mark each notification read once
 *   });                                     // onNotification returned
 *   conn.feed({unread: false, limit: 20, cursor: null})  // -> Promise of {items, unread, next}
 *   conn.markRead(["tag", ...])                          // -> Promise of {read, unread}
 *   conn.markAllRead()                                   // -> Promise of {read, unread}
 *   conn.close();
 *
 * Each notification is acked ({"ack": tag}) right after onNotification returns, so the server
 * records it as delivered. A notification not acked before a disconnect is sent again on the
 * next connection: tags already shown are acked again but not shown twice. The socket
 * reconnects with exponential backoff and jitter (0.5 s doubling to 30 s) until close().
 * With an endpoint the URL is fetched again on every connect; a 401/403 from it (expired
 * token) stops the client with status "unauthorized".
 *
 * The feed is newest first; `next` is the cursor of the following page (null at the end).
 * Feed calls need the token option; they reuse the last token resolved and, when token is a
 * function, ask it for a fresh one once on a 401. A call the server refuses rejects with an
 * Error carrying `status` and the server's `code` and `field`. With readOnAck the tags shown
 * within READ_BATCH_MS go in one request (a backlog arrives as a burst); a notification whose
 * onNotification threw is acked but left unread, and a failed mark is logged, not retried.
 */
(function (global) {
  "use strict";

  var MIN_DELAY_MS = 500;
  var MAX_DELAY_MS = 30000;
  var HEARTBEAT_MS = 25000; // the browser cannot see a dead TCP link: ask for a pong
  var PONG_TIMEOUT_MS = 10000;
  var MAX_REMEMBERED = 1000;
  var FEED_URL = "/v1/browser/notifications";
  var READ_BATCH_MS = 200;
  var MAX_TAGS_PER_READ = 1000; // the server's bound on one request

  function Unauthorized() {}

  // A refused feed call: the HTTP status and the server's {"error": {code, message, field}}.
  function requestFailed(status, body) {
    var error = (body && body.error) || {};
    var err = new Error(error.message || "Herald answered " + status);
    err.status = status;
    err.code = error.code || null;
    err.field = error.field || null;
    return err;
  }

  function connect(options) {
    var onNotification = options.onNotification || function () {};
    var onStatus = options.onStatus || function () {};
    var onUnread = options.onUnread || function () {};
    var acked = new Set();
    var socket = null;
    var closed = false;
    var attempt = 0;
    var retryTimer = null;
    var heartbeatTimer = null;
    var pongTimer = null;
    var token = null; // the last one resolved: feed calls reuse it until a 401
    var issued = 0; // feed calls numbered, so a slow answer never reports an older count
    var reported = 0;
    var toMark = [];
    var markTimer = null;

    function status(state) {
      try {
        onStatus(state);
      } catch (err) {
        console.error("Herald onStatus failed", err);
      }
    }

    function resolveToken(fresh) {
      if (!fresh && token !== null) return Promise.resolve(token);
      var source = options.token;
      return Promise.resolve(typeof source === "function" ? source() : source)
        .then(function (value) {
          if (value === null || value === undefined) throw new Error("Herald: no token");
          token = String(value);
          return token;
        });
    }

    function resolveUrl() {
      if (options.url) return Promise.resolve(options.url);
      return resolveToken(true).then(function (current) {
        var endpoint = options.endpoint || "/v1/browser-endpoint";
        var sep = endpoint.indexOf("?") < 0 ? "?" : "&";
        return fetch(endpoint + sep + "token=" + encodeURIComponent(current), {
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
          if (options.readOnAck) markLater(frame.tag);
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

    // How to send one feed request, given the token to send it with.
    function feedRequest(method, suffix, query, body) {
      var url = new URL(options.feedUrl || FEED_URL, global.location.href);
      url.pathname = url.pathname.replace(/\/$/, "") + suffix;
      Object.keys(query).forEach(function (key) { url.searchParams.set(key, query[key]); });
      return function (current) {
        url.searchParams.set("token", current);
        return fetch(url.toString(), {
          method: method,
          headers: body ? { "Content-Type": "application/json" } : {},
          body: body ? JSON.stringify(body) : undefined,
          cache: "no-store",
          credentials: "same-origin",
        });
      };
    }

    // One feed call: the token in use, then a fresh one once if that one was refused.
    function call(method, suffix, query, body) {
      var send = feedRequest(method, suffix, query, body);
      var seq = ++issued;
      return resolveToken(false).then(send).then(function (response) {
        if (response.status !== 401 || typeof options.token !== "function") return response;
        return resolveToken(true).then(send);
      }).then(function (response) {
        return response.json().catch(function () { return null; }).then(function (answer) {
          if (!response.ok || !answer) throw requestFailed(response.status, answer);
          if (typeof answer.unread === "number" && seq > reported) {
            reported = seq;
            try {
              onUnread(answer.unread);
            } catch (err) {
              console.error("Herald onUnread failed", err);
            }
          }
          return answer;
        });
      });
    }

    function feed(query) {
      var given = query || {};
      var params = {};
      if (given.unread !== undefined && given.unread !== null) {
        params.unread = given.unread ? "true" : "false";
      }
      if (given.limit !== undefined && given.limit !== null) params.limit = String(given.limit);
      if (given.cursor !== undefined && given.cursor !== null) params.cursor = String(given.cursor);
      return call("GET", "", params, null);
    }

    function markRead(tags) {
      if (!Array.isArray(tags)) return Promise.reject(new TypeError("markRead: an array of tags"));
      if (tags.length === 0) {
        return feed({ limit: 1 }).then(function (page) { return { read: 0, unread: page.unread }; });
      }
      var read = 0;
      var chain = Promise.resolve(null);
      var markChunk = function (chunk) {
        return function () {
          return call("POST", "/read", {}, { tags: chunk }).then(function (answer) {
            read += answer.read;
            return answer;
          });
        };
      };
      for (var i = 0; i < tags.length; i += MAX_TAGS_PER_READ) {
        chain = chain.then(markChunk(tags.slice(i, i + MAX_TAGS_PER_READ)));
      }
      return chain.then(function (last) { return { read: read, unread: last.unread }; });
    }

    function markAllRead() {
      return call("POST", "/read", {}, { all: true });
    }

    function markLater(tag) {
      toMark.push(tag);
      if (markTimer === null) markTimer = setTimeout(flushRead, READ_BATCH_MS);
    }

    function flushRead() {
      clearTimeout(markTimer);
      markTimer = null;
      var tags = toMark;
      toMark = [];
      if (tags.length === 0) return;
      markRead(tags).catch(function (err) { console.warn("Herald: cannot mark read", err); });
    }

    function close() {
      if (closed && !socket) return;
      closed = true;
      clearTimeout(retryTimer);
      stopHeartbeat();
      flushRead();
      if (socket) socket.close(1000, "client closed");
      socket = null;
      status("closed");
    }

    open();
    return { close: close, feed: feed, markRead: markRead, markAllRead: markAllRead };
  }

  global.Herald = { connect: connect };
})(window);
