#include "config.hpp"

#include <unistd.h>
#include <cstdlib>
#include <set>

#include <nlohmann/json.hpp>

#include "file_util.hpp"
#include "text.hpp"

namespace vac {

using json = nlohmann::json;

namespace {

const char* type_name(const json& j) {
  switch (j.type()) {
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "an array";
    case json::value_t::string:
      return "a string";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::null:
      return "null";
    default:
      return "a number";
  }
}

// Reads one JSON object, remembering which keys were asked for, so that whatever is left
// over is reported as unknown with the closest known key.
class ObjectReader {
 public:
  ObjectReader(const json& j, std::string path, std::vector<std::string>& errors,
               const std::string& file)
      : j_(j), path_(std::move(path)), errors_(errors), file_(file) {}

  std::string where(const std::string& key) const {
    return path_.empty() ? key : cat(path_, '.', key);
  }
  void error(const std::string& key, const std::string& msg) {
    errors_.push_back(cat(file_, ": ", where(key), ": ", msg));
  }
  const json* find(const std::string& key) {
    known_.push_back(key);
    auto it = j_.find(key);
    return it == j_.end() ? nullptr : &*it;
  }

  void str(const std::string& key, std::string& out,
           std::initializer_list<const char*> one_of = {}) {
    const json* v = find(key);
    if (!v) return;
    if (!v->is_string()) return error(key, cat("expected a string, got ", type_name(*v)));
    std::string s = v->get<std::string>();
    if (one_of.size()) {
      std::vector<std::string> allowed(one_of.begin(), one_of.end());
      bool ok = false;
      for (auto& a : allowed) ok |= a == s;
      if (!ok) {
        std::string list;
        for (auto& a : allowed) list += (list.empty() ? "" : ", ") + quote(a);
        return error(key, cat("must be one of ", list, ", not ", quote(s)));
      }
    }
    if (s.empty() && !one_of.size()) return error(key, "must not be empty");
    out = s;
  }
  void duration(const std::string& key, Duration& out, Duration min = Duration(1)) {
    const json* v = find(key);
    if (!v) return;
    if (!v->is_string())
      return error(key, cat("expected a duration string such as \"500ms\", got ", type_name(*v)));
    std::string err;
    Duration d{};
    if (!parse_duration(v->get<std::string>(), d, err)) return error(key, err);
    if (d < min) return error(key, cat("must be at least ", format_duration(min)));
    out = d;
  }
  void integer(const std::string& key, int& out, int min, int max) {
    const json* v = find(key);
    if (!v) return;
    if (!v->is_number_integer())
      return error(key, cat("expected a whole number, got ", type_name(*v)));
    long long n = v->get<long long>();
    if (n < min || n > max) return error(key, cat("must be between ", min, " and ", max));
    out = static_cast<int>(n);
  }
  void boolean(const std::string& key, bool& out) {
    const json* v = find(key);
    if (!v) return;
    if (!v->is_boolean()) return error(key, cat("expected true or false, got ", type_name(*v)));
    out = v->get<bool>();
  }
  // Calls each(reader) for a nested object; returns false if absent or not an object.
  template <typename F>
  bool object(const std::string& key, F&& each) {
    const json* v = find(key);
    if (!v) return false;
    if (!v->is_object()) return error(key, cat("expected an object, got ", type_name(*v))), false;
    ObjectReader r(*v, where(key), errors_, file_);
    each(r);
    r.finish();
    return true;
  }
  void finish() {
    for (auto it = j_.begin(); it != j_.end(); ++it) {
      bool ok = false;
      for (auto& k : known_) ok |= k == it.key();
      if (ok) continue;
      std::string hint = closest_match(it.key(), known_);
      error(it.key(),
            hint.empty() ? "unknown key" : cat("unknown key (did you mean ", quote(hint), "?)"));
    }
  }
  // Calls each(reader, index) for every element of an array of objects.
  template <typename F>
  bool array_of_objects(const std::string& key, const std::string& what, F&& each) {
    const json* v = find(key);
    if (!v) return false;
    if (!v->is_array() || v->empty())
      return error(key, cat("expected a non-empty array of ", what)), false;
    for (size_t i = 0; i < v->size(); ++i) {
      std::string item = cat(key, '[', i, ']');
      if (!(*v)[i].is_object()) {
        error(item, cat("expected an object, got ", type_name((*v)[i])));
        continue;
      }
      ObjectReader r((*v)[i], where(item), errors_, file_);
      each(r, i);
      r.finish();
    }
    return true;
  }
  void require(const std::string& key, const char* what) {
    if (!j_.contains(key)) error(key, cat("missing: ", what));
  }
  const json& raw() const { return j_; }
  const std::string& path() const { return path_; }

 private:
  const json& j_;
  std::string path_;
  std::vector<std::string>& errors_;
  const std::string& file_;
  std::vector<std::string> known_;
};

// Relative paths are relative to the config file's directory, which is itself absolute (see
// absolute_path), so a path never depends on the directory a command was started from.
std::string resolve(const std::string& base_dir, const std::string& p) {
  if (p.empty() || p[0] == '/' || base_dir.empty()) return p;
  return base_dir == "/" ? cat('/', p) : cat(base_dir, '/', p);
}

void read_probe(ObjectReader& r, ProbeConfig& p) {
  if (const json* e = r.find("exec")) {
    bool ok = e->is_array() && !e->empty();
    for (auto& a : *e) ok &= a.is_string();
    if (!ok)
      r.error("exec",
              "expected a non-empty array of strings, e.g. [\"pcheck\", \"--name\", \"java\"]");
    else
      for (auto& a : *e) p.exec.push_back(a.get_ref<const std::string&>());
  } else {
    r.error("exec", "missing: the command to run, e.g. [\"pcheck\", \"--name\", \"java\"]");
  }
  r.str("protocol", p.protocol, {"jsonl", "exit"});
  r.duration("interval", p.interval, Duration(10000));
  bool has_timeout = r.raw().contains("timeout");
  r.duration("timeout", p.timeout, Duration(1000));
  if (!has_timeout) p.timeout = std::min<Duration>(p.interval, 10s);
  r.integer("fall", p.fall, 1, 1000);
  r.integer("rise", p.rise, 1, 1000);
  r.boolean("critical", p.critical);
  r.str("scope", p.scope, {"node", "active"});
  r.duration("start_period", p.start_period, Duration(0));
}

void read_address(ObjectReader& r, const std::string& key, std::string& out) {
  std::string s;
  r.str(key, s);
  if (s.empty()) return;
  Address a;
  std::string err;
  if (!parse_address(std::string_view(s), a, err)) return r.error(key, err);
  out = s;
}

void read_peer(ObjectReader& r, PeerConfig& p, const std::string& base) {
  r.require("name", "the peer node's name");
  r.str("name", p.name);
  r.require("links", "at least one {\"listen\": \"ADDR:PORT\", \"peer\": \"ADDR:PORT\"}");
  r.array_of_objects("links", "{\"listen\": ..., \"peer\": ...}", [&](ObjectReader& l, size_t) {
    LinkConfig link;
    l.require("listen", "the local address to listen on, \"ADDR:PORT\"");
    l.require("peer", "the peer's address, \"ADDR:PORT\"");
    read_address(l, "listen", link.listen);
    read_address(l, "peer", link.peer);
    p.links.push_back(link);
  });
  r.require("key_file", "the pre-shared key file (create one with `vacataire keygen`)");
  r.str("key_file", p.key_file);
  p.key_file = resolve(base, p.key_file);
  r.duration("heartbeat", p.heartbeat, Duration(1000));
  r.duration("dead_after", p.dead_after, Duration(1000));
  if (p.dead_after <= p.heartbeat)
    r.error("dead_after", cat("must be longer than heartbeat (", format_duration(p.heartbeat),
                              "), or one late heartbeat loses the peer"));
}

}  // namespace

std::string default_config_path() {
  const char* env = std::getenv("VACATAIRE_CONFIG");
  return env && *env ? env : "/etc/vacataire/vacataire.json";
}

bool parse_config(const std::string& text, const std::string& file, Config& c,
                  std::vector<std::string>& errors) {
  c = Config{};
  c.file = absolute_path(file);
  std::string base = c.file.substr(0, c.file.rfind('/'));
  if (base.empty()) base = "/";

  // Duplicate keys are legal JSON but almost always a mistake; keep a set of keys per object.
  std::vector<std::set<std::string>> seen;
  std::vector<std::string> dups;
  json j;
  try {
    j = json::parse(text, [&](int, json::parse_event_t ev, json& parsed) {
      if (ev == json::parse_event_t::object_start) seen.emplace_back();
      if (ev == json::parse_event_t::object_end && !seen.empty()) seen.pop_back();
      if (ev == json::parse_event_t::key && !seen.empty() &&
          !seen.back().insert(parsed.get<std::string>()).second)
        dups.push_back(parsed.get<std::string>());
      return true;
    });
  } catch (const json::parse_error& e) {
    size_t line = 1, col = 1;
    for (size_t i = 0; i + 1 < e.byte && i < text.size(); ++i) {
      if (text[i] == '\n')
        ++line, col = 1;
      else
        ++col;
    }
    std::string what = e.what();
    if (auto p = what.find("syntax error"); p != std::string::npos) what = what.substr(p);
    errors.push_back(cat(c.file, ':', line, ':', col, ": ", what));
    return false;
  } catch (const std::exception& e) {
    // Not a syntax error but a value the parser cannot hold (a number out of range, ...).
    errors.push_back(cat(c.file, ": ", e.what()));
    return false;
  }
  for (auto& d : dups) errors.push_back(cat(c.file, ": duplicate key ", quote(d)));
  if (!j.is_object()) {
    errors.push_back(cat(c.file, ": expected a JSON object at the top level"));
    return false;
  }

  ObjectReader top(j, "", errors, c.file);
  top.object("node", [&](ObjectReader& r) {
    r.str("name", c.node_name);
    r.str("role", c.role, {"master", "standby"});
    r.str("state_dir", c.state_dir);
  });
  top.str("services_dir", c.services_dir);
  top.str("control_socket", c.control_socket);
  top.str("control_group", c.control_group);
  top.str("probes_dir", c.probes_dir);
  top.object("peer", [&](ObjectReader& r) { read_peer(r, c.peer.emplace(), base); });
  top.object("failover", [&](ObjectReader& r) {
    r.str("failback", c.failover.failback, {"manual", "auto"});
    r.duration("startup_grace", c.failover.startup_grace, Duration(0));
    r.duration("isolation_after", c.failover.isolation_after, Duration(1000));
    r.str("witness", c.failover.witness);
    r.boolean("stop_without_peer", c.failover.stop_without_peer);
  });
  if (const json* probes = top.find("probes")) {
    if (!probes->is_object()) {
      top.error("probes", cat("expected an object of probes by name, got ", type_name(*probes)));
    } else {
      for (auto it = probes->begin(); it != probes->end(); ++it) {
        std::string name = it.key();
        if (!it->is_object()) {
          top.error(cat("probes.", name), cat("expected an object, got ", type_name(*it)));
          continue;
        }
        ObjectReader r(*it, cat("probes.", name), errors, c.file);
        read_probe(r, c.probes[name]);
        r.finish();
      }
    }
  }
  top.object("endpoints", [&](ObjectReader& r) {
    read_address(r, "http", c.endpoint_http);
    read_address(r, "agent_check", c.endpoint_agent_check);
    r.str("agent_inactive", c.endpoint_agent_inactive, {"down", "maint"});
  });
  top.str("notify_dir", c.notify_dir);
  top.duration("notify_timeout", c.notify_timeout, Duration(1));
  top.str("user", c.user);
  // Floors that keep backoff working (vacataire.json(5), RESTART): a service that dies young
  // waits at least backoff, doubling up to backoff_max; one that ran stable_after is restarted
  // at once. Below these a crashing service would spin.
  top.object("restart", [&](ObjectReader& r) {
    r.duration("backoff", c.restart.backoff, kMinBackoff);
    r.duration("backoff_max", c.restart.backoff_max, kMinBackoffMax);
    r.duration("stable_after", c.restart.stable_after, kMinStableAfter);
    r.integer("budget", c.restart.budget, 0, 100000);
    r.duration("budget_window", c.restart.budget_window, Duration(1000));
  });
  top.finish();

  if (!c.failover.witness.empty() && !c.probes.count(c.failover.witness))
    errors.push_back(cat(c.file, ": failover.witness: no probe named ", quote(c.failover.witness),
                         " in probes"));
  if (c.restart.backoff_max < c.restart.backoff)
    errors.push_back(
        cat(c.file, ": restart.backoff_max: must not be shorter than restart.backoff"));
  bool named = !c.node_name.empty();
  if (!named) {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    c.node_name = host;
  }
  // Checked after the host name default: two nodes with one name have no master by name
  // order when their roles clash (the core then lets neither serve).
  if (c.peer && c.peer->name == c.node_name)
    errors.push_back(cat(c.file, ": peer.name: the peer cannot have this node's own name",
                         named ? "" : " (the host name, as node.name is unset)"));
  c.state_dir = resolve(base, c.state_dir);
  c.services_dir = resolve(base, c.services_dir);
  c.control_socket = resolve(base, c.control_socket);
  if (!c.probes_dir.empty()) c.probes_dir = resolve(base, c.probes_dir);
  if (!c.notify_dir.empty()) c.notify_dir = resolve(base, c.notify_dir);
  // A probe program named by a path ("./check.sh", "bin/x") is relative to the config file too;
  // a bare name is looked up at run time (built-ins, then PATH).
  for (auto& [name, p] : c.probes)
    if (!p.exec.empty() && p.exec[0].find('/') != std::string::npos)
      p.exec[0] = resolve(base, p.exec[0]);
  return errors.empty();
}

std::string absolute_path(const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  char cwd[4096];
  if (!getcwd(cwd, sizeof cwd)) return path;
  std::string_view rel = path;
  while (rel.substr(0, 2) == "./") rel.remove_prefix(2);
  std::string dir = cwd;
  return dir == "/" ? cat('/', rel) : cat(dir, '/', rel);
}

bool load_config(const std::string& file, Config& out, std::vector<std::string>& errors) {
  std::string text, err;
  std::string abs = absolute_path(file);
  if (!read_small_file(abs, kMaxConfigBytes, text, err)) {
    errors.push_back(cat("cannot read config ", abs, ": ", err));
    return false;
  }
  return parse_config(text, abs, out, errors);
}

}  // namespace vac
