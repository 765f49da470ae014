// The JSON of the informational routes: /v1/models, /props, /slots.
#pragma once

#include "server/api_error.h"
#include "server/served_model.h"

namespace moeserve {

json models_json(const ServedModel& model);
json props_json(const ServedModel& model);
json slots_json(const ServedModel& model);

}  // namespace moeserve
