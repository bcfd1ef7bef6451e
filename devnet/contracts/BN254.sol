// SPDX-License-Identifier: MIT
pragma solidity ^0.8.27;

/// @title BN254 (alt_bn128) arithmetic over the EVM precompiles 0x05-0x08.
/// @notice G2 coordinates are in EVM order: X = [imaginary, real], Y = [imaginary, real].
///         Every precompile failure reverts with `PrecompileFailed(address)`.
library BN254 {
    /// Base field modulus p.
    uint256 internal constant FP_MODULUS =
        21888242871839275222246405745257275088696311157297823662689037894645226208583;
    /// Group order r (the scalar field).
    uint256 internal constant FR_MODULUS =
        21888242871839275222246405745257275088548364400416034343698204186575808495617;

    /// (p + 1) / 4: square roots in Fp are x^((p+1)/4) because p = 3 (mod 4).
    uint256 private constant SQRT_EXPONENT =
        5472060717959818805561601436314318772174077789324455915672259473661306552146;

    // The negated G2 generator, EVM order.
    uint256 private constant NEG_G2_X_IMAG =
        11559732032986387107991004021392285783925812861821192530917403151452391805634;
    uint256 private constant NEG_G2_X_REAL =
        10857046999023057135944570762232829481370756359578518086990519993285655852781;
    uint256 private constant NEG_G2_Y_IMAG =
        17805874995975841540914202342111839520379459829704422454583296818431106115052;
    uint256 private constant NEG_G2_Y_REAL =
        13392588948715843804641432497768002650278120570034223513918757245338268106653;

    struct G1Point {
        uint256 X;
        uint256 Y;
    }

    struct G2Point {
        uint256[2] X;
        uint256[2] Y;
    }

    error PrecompileFailed(address precompile);

    function generatorG1() internal pure returns (G1Point memory) {
        return G1Point(1, 2);
    }

    function negGeneratorG2() internal pure returns (G2Point memory) {
        return G2Point([NEG_G2_X_IMAG, NEG_G2_X_REAL], [NEG_G2_Y_IMAG, NEG_G2_Y_REAL]);
    }

    function isZero(G1Point memory p) internal pure returns (bool) {
        return p.X == 0 && p.Y == 0;
    }

    /// -P; the point at infinity (0, 0) stays itself.
    function negate(G1Point memory p) internal pure returns (G1Point memory) {
        if (p.X == 0 && p.Y == 0) {
            return G1Point(0, 0);
        }
        return G1Point(p.X, FP_MODULUS - (p.Y % FP_MODULUS));
    }

    /// P + Q through ecAdd (0x06).
    function plus(G1Point memory p, G1Point memory q) internal view returns (G1Point memory r) {
        uint256[4] memory input = [p.X, p.Y, q.X, q.Y];
        bool ok;
        assembly ("memory-safe") {
            ok := staticcall(gas(), 0x06, input, 0x80, r, 0x40)
        }
        if (!ok) revert PrecompileFailed(address(0x06));
    }

    /// s * P through ecMul (0x07).
    function scalar_mul(G1Point memory p, uint256 s) internal view returns (G1Point memory r) {
        uint256[3] memory input = [p.X, p.Y, s];
        bool ok;
        assembly ("memory-safe") {
            ok := staticcall(gas(), 0x07, input, 0x60, r, 0x40)
        }
        if (!ok) revert PrecompileFailed(address(0x07));
    }

    /// e(a1, a2) * e(b1, b2) == 1 through ecPairing (0x08).
    function pairing(G1Point memory a1, G2Point memory a2, G1Point memory b1, G2Point memory b2)
        internal
        view
        returns (bool)
    {
        uint256[12] memory input = [
            a1.X, a1.Y, a2.X[0], a2.X[1], a2.Y[0], a2.Y[1],
            b1.X, b1.Y, b2.X[0], b2.X[1], b2.Y[0], b2.Y[1]
        ];
        uint256[1] memory out;
        bool ok;
        assembly ("memory-safe") {
            ok := staticcall(gas(), 0x08, input, 0x180, out, 0x20)
        }
        if (!ok) revert PrecompileFailed(address(0x08));
        return out[0] == 1;
    }

    /// base^exponent mod modulus through modexp (0x05).
    function expMod(uint256 base, uint256 exponent, uint256 modulus) internal view returns (uint256 result) {
        uint256[6] memory input = [uint256(32), 32, 32, base, exponent, modulus];
        uint256[1] memory out;
        bool ok;
        assembly ("memory-safe") {
            ok := staticcall(gas(), 0x05, input, 0xc0, out, 0x20)
        }
        if (!ok) revert PrecompileFailed(address(0x05));
        result = out[0];
    }

    /// Try-and-increment hash to G1, as eigenlayer-middleware and eigensdk do it:
    /// x = uint256(h) mod p; while x^3 + 3 is not a square, x += 1; y = (x^3 + 3)^((p+1)/4).
    function hashToG1(bytes32 h) internal view returns (G1Point memory point) {
        uint256 x = uint256(h) % FP_MODULUS;
        while (true) {
            uint256 beta = addmod(mulmod(mulmod(x, x, FP_MODULUS), x, FP_MODULUS), 3, FP_MODULUS);
            uint256 y = expMod(beta, SQRT_EXPONENT, FP_MODULUS);
            if (beta == mulmod(y, y, FP_MODULUS)) {
                point = G1Point(x, y);
                return point;
            }
            x = addmod(x, 1, FP_MODULUS);
        }
    }

    /// keccak256(abi.encodePacked(X, Y)): EigenLayer's pubkey hash, used as the operator id.
    function hashG1Point(G1Point memory p) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(p.X, p.Y));
    }
}
