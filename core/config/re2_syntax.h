// Syntax check for the RE2 regular expressions Istio accepts in
// StringMatch.regex (Envoy compiles them with RE2).
//
// We have no RE2 dependency, so this is an approximation built on std::regex
// (ECMAScript grammar): RE2-only syntax that ECMAScript lacks ((?i), (?P<n>..),
// \z, \pL, \Q..\E, literal '{') is rewritten to an equivalent shape before
// compiling, and Perl features RE2 refuses but ECMAScript accepts
// (lookaround, backreferences) are rejected up front. Error texts follow Go's
// regexp package ("error parsing regexp: missing closing ): `(a`") as closely
// as std::regex's error codes allow; the offending fragment may be wider than
// the one Go would quote.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace sluice::config {

// nullopt when `re` is valid RE2 syntax (as far as we can tell), else the
// error text.
std::optional<std::string> re2_syntax_error(std::string_view re);

}  // namespace sluice::config
