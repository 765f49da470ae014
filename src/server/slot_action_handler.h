// POST /slots/{id}?action=save|restore|erase (llama-server's slot actions,
// spec server-behaviour §5.11): a slot's cache to a file in --slot-save-path
// and back, or erased. The scheduler runs the action once the slot is idle.
#pragma once

#include <httplib.h>

#include "server/json_fields.h"
#include "server/served_model.h"

namespace moeserve {

// The response body; throws ApiError (501 without --slot-save-path, 400 for
// a bad action, slot id or file name, or a failed save or restore).
json slot_action_response(const httplib::Request& req, ServedModel& model);

}  // namespace moeserve
