#include "server/slot_action_handler.h"

#include <filesystem>
#include <string>

#include "server/api_error.h"
#include "server/json_fields.h"

namespace moeserve {

// POST /slots/{id}?action=save|restore|erase (spec §5.11).
json slot_action_response(const httplib::Request& req, ServedModel& m) {
    const std::string& dir = m.options().slot_save_path;
    if (dir.empty())
        throw ApiError(501, "not_supported_error",
                       "This server does not support slots action. Start it with `--slot-save-path`");
    const std::string action = req.get_param_value("action");
    SlotAction what;
    if (action == "save")
        what = SlotAction::save;
    else if (action == "restore")
        what = SlotAction::restore;
    else if (action == "erase")
        what = SlotAction::erase;
    else
        throw invalid_request("Invalid action");
    int id = -1;
    try {
        id = std::stoi(req.matches[1].str());
    } catch (const std::exception&) {
        throw invalid_request("Invalid slot id");
    }
    std::string filename;
    if (what != SlotAction::erase) {
        const json body = parse_body(req.body);
        auto f = body.find("filename");
        if (f == body.end() || !f->is_string()) throw invalid_request("Field 'filename' is required (a string)");
        filename = f->get<std::string>();
        // A plain file name inside --slot-save-path: nothing that could reach outside it.
        if (filename.empty() || filename == "." || filename == ".." ||
            filename.find_first_of("/\\") != std::string::npos || filename.find('\0') != std::string::npos)
            throw invalid_request("Invalid filename");
    }
    const std::string path = filename.empty() ? "" : (std::filesystem::path(dir) / filename).string();
    const SlotActionResult r = m.scheduler().slot_action(id, what, path).get();
    if (!r.ok) throw invalid_request(r.message);
    json out = {{"id_slot", id}};
    switch (what) {
        case SlotAction::save:
            out["filename"] = filename;
            out["n_saved"] = r.n_tokens;
            out["n_written"] = r.n_bytes;
            out["timings"] = {{"save_ms", r.ms}};
            break;
        case SlotAction::restore:
            out["filename"] = filename;
            out["n_restored"] = r.n_tokens;
            out["n_read"] = r.n_bytes;
            out["timings"] = {{"restore_ms", r.ms}};
            break;
        case SlotAction::erase:
            out["n_erased"] = r.n_tokens;
            break;
    }
    return out;
}

}  // namespace moeserve
