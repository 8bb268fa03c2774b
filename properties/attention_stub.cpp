#include "properties/families.hpp"
namespace normcheck {
std::vector<Property> attention_properties() { return {}; }
}
