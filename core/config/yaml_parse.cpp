#include "core/config/yaml_parse.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>

#include <sstream>

namespace sluice::config {

namespace {

// Watches document boundaries only. A document that starts where the
// previous one started means the parser consumed nothing: it is stuck.
class ProgressWatch : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override {
    if (documents_ > 0 && mark.pos == last_start_.pos) stuck_ = true;
    last_start_ = mark;
    ++documents_;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}

  bool stuck() const { return stuck_; }
  const YAML::Mark& last_start() const { return last_start_; }

 private:
  size_t documents_ = 0;
  YAML::Mark last_start_;
  bool stuck_ = false;
};

// True when the document is a block mapping starting at column 0, the shape
// of nearly every Kubernetes manifest. Nothing can end such a mapping before
// the end of the document, so yaml-cpp reports any stray token as an error
// instead of stalling on it, and the dry run can be skipped. Every other
// shape (JSON, a root list, an indented root, `...` markers) gets it.
bool is_plain_block_mapping(std::string_view text) {
  bool first = true;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    // More than one document in the text (after `...`, a second `---`, or
    // unsplit because of a directive): each needs the dry run.
    if (line.substr(0, 3) == "..." || (!line.empty() && line[0] == '%')) return false;
    const bool marker =
        line.substr(0, 3) == "---" &&
        (line.size() == 3 || line.find_first_not_of(" \t\r", 3) == std::string_view::npos);
    if (marker && !first) return false;
    if (marker || !first) continue;
    const size_t content = line.find_first_not_of(" \t\r");
    if (content == std::string_view::npos || line[content] == '#') continue;
    if (content != 0) return false;
    constexpr std::string_view kIndicators = "-?:,[]{}#&*!|>'\"%@`";
    if (kIndicators.find(line[0]) != std::string_view::npos) return false;
    // And it must be a key: a plain scalar, then ':' and a blank or the
    // line's end, before any comment. A root that is a plain scalar
    // ("i #" then an indented "- h" and a stray ",") stalls yaml-cpp 0.7's
    // LoadAll, which then grows without bound (jbeder/yaml-cpp#1319): such
    // a text gets the dry run.
    const size_t comment = line.find(" #");
    size_t colon = line.find(':');
    while (colon != std::string_view::npos && colon + 1 < line.size() && line[colon + 1] != ' ' &&
           line[colon + 1] != '\t' && line[colon + 1] != '\r') {
      colon = line.find(':', colon + 1);
    }
    if (colon == std::string_view::npos || (comment != std::string_view::npos && comment < colon)) return false;
    first = false;
  }
  return !first;
}

}  // namespace

ParsedDocuments parse_documents(std::string_view text) {
  ParsedDocuments result;
  const std::string copy(text);
  try {
    if (!is_plain_block_mapping(text)) {
      // A dry run that only watches document boundaries, so that LoadAll
      // runs only on streams it is known to finish. It scans the text a
      // second time, which is why the common shape above skips it.
      std::istringstream stream(copy);
      YAML::Parser parser(stream);
      ProgressWatch watch;
      // Real streams hold few documents; the cap is a second line of defence.
      for (size_t turns = 0; parser.HandleNextDocument(watch); ++turns) {
        if (watch.stuck() || turns > 100'000) {
          result.ok = false;
          result.error_mark = watch.last_start();
          result.error = "unexpected text after the end of a document";
          return result;
        }
      }
    }
    result.documents = YAML::LoadAll(copy);
  } catch (const YAML::Exception& e) {
    result.ok = false;
    result.error_mark = e.mark;
    result.error = e.msg;
  }
  return result;
}

}  // namespace sluice::config
