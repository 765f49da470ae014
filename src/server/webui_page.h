// The built-in chat page served at "/" (webui_page.cpp).
#pragma once

#include <string_view>

namespace moeserve {

// The whole page: HTML with its CSS and JavaScript inline.
std::string_view webui_page();

}  // namespace moeserve
