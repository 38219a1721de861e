// MediaPipe's canonical face model: the 468-vertex mean face the face mesh
// network predicts (positions in cm, +x right, +y up, +z towards the viewer),
// its 898 triangles, per-vertex UVs and the 33-landmark weighted basis
// MediaPipe uses to solve head pose. Read from the geometry-pipeline metadata
// protobuf that scripts/fetch-models.sh keeps as models/face_geometry.binarypb
// (from @mediapipe/face_mesh, Apache-2.0; docs/reconstruct-research.md).
// The protobuf is decoded by hand (varints, packed fields) and validated:
// every length within the buffer, vertex data a multiple of 5 floats, every
// index below the vertex count.
#pragma once
#include <array>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace hfr {

struct CanonicalFace {
  std::vector<std::array<float, 3>> vertices;  // cm
  std::vector<std::array<float, 2>> uvs;       // texture coordinates, v up (OpenGL)
  std::vector<std::array<int, 3>> triangles;   // 0-based vertex indices
  std::vector<std::pair<int, float>> pose_basis;  // (landmark, weight)
};

CanonicalFace parse_canonical_face(const unsigned char* data, std::size_t size, const std::string& name);
CanonicalFace read_canonical_face(const std::string& path);

}  // namespace hfr
