// content: does the application answer in full? An HTTP(S) GET through libcurl that fails
// unless the body is exactly the configured number of bytes (the check of the tool Le
// Vacataire replaces), with an optional expected status and body pattern. Every check uses a
// fresh connection, as a load balancer's would. See content(8).
#include <chrono>
#include <regex>

#include <curl/curl.h>
#include <CLI/CLI.hpp>

#include "common/duration.hpp"
#include "common/text.hpp"
#include "probes/probe.hpp"

namespace {

using namespace vac;

struct Options {
  std::string url;
  long long bytes = -1;
  long status = 200;
  std::string pattern;
  Duration timeout = std::chrono::seconds(2);
  bool insecure = false;
  std::string cacert;
  std::vector<std::string> headers;
};

constexpr size_t kBodyCap = 16 << 20;

size_t on_body(char* data, size_t, size_t n, void* user) {
  auto* body = static_cast<std::string*>(user);
  body->append(data, std::min(n, kBodyCap - std::min(kBodyCap, body->size())));
  return n;
}

std::string ms_text(double seconds) {
  std::ostringstream o;
  o.precision(1);
  o << std::fixed << seconds * 1000 << "ms";
  return o.str();
}

class Checker {
 public:
  Checker(const Options& o, const std::regex* re) : o_(o), re_(re), curl_(curl_easy_init()) {
    for (auto& h : o_.headers) headers_ = curl_slist_append(headers_, h.c_str());
  }
  ~Checker() {
    curl_slist_free_all(headers_);
    curl_easy_cleanup(curl_);
  }

  ProbeResult operator()() {
    std::string body;
    char err[CURL_ERROR_SIZE] = {};
    curl_easy_reset(curl_);
    curl_easy_setopt(curl_, CURLOPT_URL, o_.url.c_str());
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(curl_, CURLOPT_ERRORBUFFER, err);
    curl_easy_setopt(curl_, CURLOPT_TIMEOUT_MS, static_cast<long>(o_.timeout.count() / 1000));
    curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl_, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(curl_, CURLOPT_FRESH_CONNECT, 1L);
    curl_easy_setopt(curl_, CURLOPT_USERAGENT, "vacataire-content/1");
    if (headers_) curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers_);
    if (o_.insecure) {
      curl_easy_setopt(curl_, CURLOPT_SSL_VERIFYPEER, 0L);
      curl_easy_setopt(curl_, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (!o_.cacert.empty()) curl_easy_setopt(curl_, CURLOPT_CAINFO, o_.cacert.c_str());

    CURLcode rc = curl_easy_perform(curl_);
    double total = 0;
    long code = 0;
    curl_off_t announced = -1;
    curl_easy_getinfo(curl_, CURLINFO_TOTAL_TIME, &total);
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(curl_, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced);
    nlohmann::json metrics = {{"time", {{"value", total * 1000}, {"uom", "ms"}}},
                              {"size", {{"value", body.size()}, {"uom", "B"}}}};
    if (code) metrics["http_status"] = {{"value", code}};
    std::string why = err[0] ? err : curl_easy_strerror(rc);
    switch (rc) {
      case CURLE_OK:
        break;
      case CURLE_COULDNT_CONNECT:
        return {Status::fail, cat("cannot connect to ", o_.url, ": ", why), metrics};
      case CURLE_COULDNT_RESOLVE_HOST:
        return {Status::fail, cat("cannot resolve the host of ", o_.url, ": ", why), metrics};
      case CURLE_OPERATION_TIMEDOUT:
        return {Status::fail,
                cat("timed out after ", format_duration(o_.timeout), " (", body.size(),
                    " bytes received): ", why),
                metrics};
      case CURLE_PARTIAL_FILE:
        return {Status::fail,
                cat("response truncated: got ", body.size(), " bytes of ", announced, " announced"),
                metrics};
      case CURLE_GOT_NOTHING:
        return {Status::fail,
                cat("the server closed the connection without answering (", o_.url, ")"), metrics};
      case CURLE_SSL_CONNECT_ERROR:
      case CURLE_PEER_FAILED_VERIFICATION:
      case CURLE_SSL_CERTPROBLEM:
      case CURLE_SSL_CIPHER:
      case CURLE_SSL_CACERT_BADFILE:
        return {Status::fail, cat("TLS error: ", why), metrics};
      default:
        return {Status::fail, cat("request failed: ", why), metrics};
    }
    if (code != o_.status)
      return {Status::fail, cat("HTTP ", code, ", expected ", o_.status), metrics};
    if (o_.bytes >= 0 && static_cast<long long>(body.size()) != o_.bytes)
      return {Status::fail, cat("body is ", body.size(), " bytes, expected exactly ", o_.bytes),
              metrics};
    if (re_ && !std::regex_search(body, *re_))
      return {Status::fail, cat("body does not match /", o_.pattern, "/"), metrics};
    return {Status::ok, cat("HTTP ", code, ", ", body.size(), " bytes in ", ms_text(total)),
            metrics};
  }

 private:
  const Options& o_;
  const std::regex* re_;
  CURL* curl_;
  curl_slist* headers_ = nullptr;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"content: is the application's answer complete? (a Le Vacataire probe)", "content"};
  Options o;
  bool once = false;
  std::string timeout = "2s";
  app.add_option("--url", o.url, "the URL to GET (http:// or https://)")->required();
  app.add_option("--bytes", o.bytes, "the exact body length expected")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--status", o.status, "the HTTP status expected (default 200)");
  app.add_option("--pattern", o.pattern, "a regular expression the body must contain");
  app.add_option("--timeout", timeout, "the whole request's time limit (default 2s)");
  app.add_flag("--insecure", o.insecure, "do not verify the server's certificate");
  app.add_option("--cacert", o.cacert, "CA certificates to verify the server with");
  app.add_option("--header", o.headers, "a request header, \"Name: value\" (repeatable)");
  app.add_flag("--once", once, "check once, print the result and exit 0/1/2");
  try {
    app.parse(argc, argv);
    std::string err;
    if (!vac::parse_duration(timeout, o.timeout, err)) throw CLI::ValidationError("--timeout", err);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 3;
  }
  std::regex re;
  if (!o.pattern.empty() && !vac::probe::compile_regex("content", "--pattern", o.pattern, re))
    return 3;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  int rc;
  {
    Checker checker(o, o.pattern.empty() ? nullptr : &re);
    rc = vac::probe::serve(once, [&] { return checker(); });
  }
  curl_global_cleanup();
  return rc;
}
