// SPDX-License-Identifier: MIT
pragma solidity ^0.8.27;

import {BN254} from "./BN254.sol";

/// @title OperatorRegistry: the devnet's stand-in for EigenLayer's registry contracts.
/// @notice One contract emits the events that EigenLayer's RegistryCoordinator, BLSApkRegistry,
///         StakeRegistry and socket registry emit, for quorum 0 only. The owner sets stakes directly.
///         Stakes keep a history per block so that a task is judged at the stake of its creation block.
contract OperatorRegistry {
    using BN254 for BN254.G1Point;

    /// Domain tag of the proof-of-possession message.
    string public constant PUBKEY_REGISTRATION_TAG = "AVSControlPlane.PubkeyRegistration";
    uint8 public constant QUORUM_NUMBER = 0;

    struct StakeUpdate {
        uint32 blockNumber;
        uint96 stake;
    }

    struct Operator {
        bytes32 operatorId;
        bool registered;
    }

    event NewPubkeyRegistration(address indexed operator, BN254.G1Point pubkeyG1, BN254.G2Point pubkeyG2);
    event OperatorRegistered(address indexed operator, bytes32 indexed operatorId);
    event OperatorDeregistered(address indexed operator, bytes32 indexed operatorId);
    event OperatorStakeUpdate(bytes32 indexed operatorId, uint8 quorumNumber, uint96 stake);
    event OperatorSocketUpdate(bytes32 indexed operatorId, string socket);

    error CallerIsNotOwner(address caller);
    error ZeroPubkey();
    error PubkeyAlreadyRegistered(bytes32 operatorId, address operator);
    error PubkeyMismatch(bytes32 registeredOperatorId, bytes32 givenOperatorId);
    error OperatorAlreadyRegistered(address operator);
    error OperatorNotRegistered(address operator);
    error OperatorIdNotRegistered(bytes32 operatorId);
    error InvalidProofOfPossession();

    address public immutable owner;

    /// Operator address => its id (the hash of its G1 key, bound forever once set) and registration state.
    mapping(address => Operator) private _operators;
    /// Operator id => the address that registered it (bound forever once set).
    mapping(bytes32 => address) private _operatorOfId;
    /// Operator id => G1 public key.
    mapping(bytes32 => BN254.G1Point) private _pubkeysG1;
    /// Operator id => stake history, ascending by block number, at most one entry per block.
    mapping(bytes32 => StakeUpdate[]) private _operatorStakeHistory;
    /// Total stake history, ascending by block number, at most one entry per block.
    StakeUpdate[] private _totalStakeHistory;

    constructor() {
        owner = msg.sender;
    }

    modifier onlyOwner() {
        if (msg.sender != owner) revert CallerIsNotOwner(msg.sender);
        _;
    }

    // ------------------------------------------------------------------ registration

    /// Register the caller with a BLS key pair and a proof of possession of its secret key:
    /// `registrationSignature = sk * pubkeyRegistrationMessageHash(msg.sender)`.
    function registerOperator(
        BN254.G1Point calldata pubkeyG1,
        BN254.G2Point calldata pubkeyG2,
        BN254.G1Point calldata registrationSignature,
        string calldata socket
    ) external {
        if (pubkeyG1.X == 0 && pubkeyG1.Y == 0) revert ZeroPubkey();
        Operator storage operator = _operators[msg.sender];
        if (operator.registered) revert OperatorAlreadyRegistered(msg.sender);

        bytes32 operatorId = BN254.hashG1Point(pubkeyG1);
        address keyOwner = _operatorOfId[operatorId];
        if (keyOwner != address(0) && keyOwner != msg.sender) {
            revert PubkeyAlreadyRegistered(operatorId, keyOwner);
        }
        if (operator.operatorId != bytes32(0) && operator.operatorId != operatorId) {
            revert PubkeyMismatch(operator.operatorId, operatorId);
        }
        if (!_verifyProofOfPossession(msg.sender, pubkeyG1, pubkeyG2, registrationSignature)) {
            revert InvalidProofOfPossession();
        }

        bool firstRegistration = keyOwner == address(0);
        if (firstRegistration) {
            _operatorOfId[operatorId] = msg.sender;
            _pubkeysG1[operatorId] = pubkeyG1;
            operator.operatorId = operatorId;
            // Like BLSApkRegistry: the key is registered once per operator, forever.
            emit NewPubkeyRegistration(msg.sender, pubkeyG1, pubkeyG2);
        }
        operator.registered = true;
        emit OperatorSocketUpdate(operatorId, socket);
        emit OperatorRegistered(msg.sender, operatorId);
    }

    /// Deregister the caller: its stake drops to zero, then it is out.
    function deregisterOperator() external {
        Operator storage operator = _operators[msg.sender];
        if (!operator.registered) revert OperatorNotRegistered(msg.sender);
        bytes32 operatorId = operator.operatorId;
        if (_currentStake(_operatorStakeHistory[operatorId]) != 0) {
            _setStake(operatorId, 0);
            emit OperatorStakeUpdate(operatorId, QUORUM_NUMBER, 0);
        }
        operator.registered = false;
        emit OperatorDeregistered(msg.sender, operatorId);
    }

    function updateSocket(string calldata socket) external {
        Operator storage operator = _operators[msg.sender];
        if (!operator.registered) revert OperatorNotRegistered(msg.sender);
        emit OperatorSocketUpdate(operator.operatorId, socket);
    }

    function setOperatorStake(bytes32 operatorId, uint96 stake) external onlyOwner {
        if (!isRegistered(operatorId)) revert OperatorIdNotRegistered(operatorId);
        _setStake(operatorId, stake);
        emit OperatorStakeUpdate(operatorId, QUORUM_NUMBER, stake);
    }

    // ------------------------------------------------------------------ views

    function isRegistered(bytes32 operatorId) public view returns (bool) {
        address operator = _operatorOfId[operatorId];
        return operator != address(0) && _operators[operator].registered;
    }

    /// The operator id the address registered with (zero if it never registered).
    function getOperatorId(address operator) external view returns (bytes32) {
        return _operators[operator].operatorId;
    }

    /// The address bound to an operator id (zero if none).
    function getOperatorAddress(bytes32 operatorId) external view returns (address) {
        return _operatorOfId[operatorId];
    }

    function getOperatorPubkeyG1(bytes32 operatorId) external view returns (BN254.G1Point memory) {
        return _pubkeysG1[operatorId];
    }

    function getOperatorStake(bytes32 operatorId) external view returns (uint96) {
        return _currentStake(_operatorStakeHistory[operatorId]);
    }

    function getTotalStake() external view returns (uint96) {
        return _currentStake(_totalStakeHistory);
    }

    /// The operator's stake as of the end of `blockNumber` (zero before its first stake).
    function getOperatorStakeAtBlock(bytes32 operatorId, uint32 blockNumber) external view returns (uint96) {
        return _stakeAtBlock(_operatorStakeHistory[operatorId], blockNumber);
    }

    /// The total stake as of the end of `blockNumber`.
    function getTotalStakeAtBlock(uint32 blockNumber) external view returns (uint96) {
        return _stakeAtBlock(_totalStakeHistory, blockNumber);
    }

    function getOperatorStakeHistoryLength(bytes32 operatorId) external view returns (uint256) {
        return _operatorStakeHistory[operatorId].length;
    }

    function getOperatorStakeUpdateAtIndex(bytes32 operatorId, uint256 index)
        external
        view
        returns (StakeUpdate memory)
    {
        return _operatorStakeHistory[operatorId][index];
    }

    /// The 32-byte digest the proof of possession signs (before hashing to G1).
    function pubkeyRegistrationMessageDigest(address operator) public view returns (bytes32) {
        return keccak256(abi.encodePacked(PUBKEY_REGISTRATION_TAG, block.chainid, address(this), operator));
    }

    /// The G1 point the proof of possession is a signature on.
    function pubkeyRegistrationMessageHash(address operator) public view returns (BN254.G1Point memory) {
        return BN254.hashToG1(pubkeyRegistrationMessageDigest(operator));
    }

    /// BN254.hashToG1, exposed so that off-chain code can be checked against it.
    function hashToG1(bytes32 message) external view returns (BN254.G1Point memory) {
        return BN254.hashToG1(message);
    }

    // ------------------------------------------------------------------ internals

    function _verifyProofOfPossession(
        address operator,
        BN254.G1Point calldata pubkeyG1,
        BN254.G2Point calldata pubkeyG2,
        BN254.G1Point calldata signature
    ) private view returns (bool) {
        BN254.G1Point memory messagePoint = pubkeyRegistrationMessageHash(operator);
        uint256 gamma = uint256(
            keccak256(
                abi.encodePacked(
                    signature.X,
                    signature.Y,
                    pubkeyG1.X,
                    pubkeyG1.Y,
                    pubkeyG2.X,
                    pubkeyG2.Y,
                    messagePoint.X,
                    messagePoint.Y
                )
            )
        ) % BN254.FR_MODULUS;
        // e(sig + gamma * pkG1, -G2) * e(H(m) + gamma * G1, pkG2) == 1
        return BN254.pairing(
            BN254.G1Point(signature.X, signature.Y).plus(BN254.G1Point(pubkeyG1.X, pubkeyG1.Y).scalar_mul(gamma)),
            BN254.negGeneratorG2(),
            messagePoint.plus(BN254.generatorG1().scalar_mul(gamma)),
            pubkeyG2
        );
    }

    function _setStake(bytes32 operatorId, uint96 stake) private {
        StakeUpdate[] storage history = _operatorStakeHistory[operatorId];
        uint96 previous = _currentStake(history);
        _record(history, stake);
        uint96 total = _currentStake(_totalStakeHistory);
        _record(_totalStakeHistory, total - previous + stake);
    }

    function _record(StakeUpdate[] storage history, uint96 stake) private {
        uint32 blockNumber = uint32(block.number);
        uint256 length = history.length;
        if (length != 0 && history[length - 1].blockNumber == blockNumber) {
            history[length - 1].stake = stake;
        } else {
            history.push(StakeUpdate(blockNumber, stake));
        }
    }

    function _currentStake(StakeUpdate[] storage history) private view returns (uint96) {
        uint256 length = history.length;
        return length == 0 ? 0 : history[length - 1].stake;
    }

    /// The stake of the last entry whose block number is <= blockNumber (binary search), or zero.
    function _stakeAtBlock(StakeUpdate[] storage history, uint32 blockNumber) private view returns (uint96) {
        uint256 low = 0;
        uint256 high = history.length;
        // Invariant: entries [0, low) are <= blockNumber, entries [high, length) are > blockNumber.
        while (low < high) {
            uint256 mid = (low + high) / 2;
            if (history[mid].blockNumber <= blockNumber) {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        return low == 0 ? 0 : history[low - 1].stake;
    }
}
