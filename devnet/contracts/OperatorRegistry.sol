// SPDX-License-Identifier: MIT
pragma solidity ^0.8.27;

import {BN254} from "./BN254.sol";

/// @title OperatorRegistry: the devnet's stand-in for EigenLayer's registry contracts.
/// @notice One contract emits the events, and keeps the indexed histories, that EigenLayer's RegistryCoordinator
///         (quorum bitmaps), BLSApkRegistry (quorum apk), StakeRegistry (stakes) and socket registry keep, for
///         quorum 0 only. The owner sets stakes directly. Each history entry is valid from its updateBlockNumber
///         up to (not including) its nextUpdateBlockNumber (0: still current); several updates in one block
///         overwrite that block's entry, so a block's state is the state at its end.
contract OperatorRegistry {
    using BN254 for BN254.G1Point;

    /// Domain tag of the proof-of-possession message.
    string public constant PUBKEY_REGISTRATION_TAG = "AVSControlPlane.PubkeyRegistration";
    uint8 public constant QUORUM_NUMBER = 0;

    struct QuorumBitmapUpdate {
        uint32 updateBlockNumber;
        uint32 nextUpdateBlockNumber;
        uint192 quorumBitmap;
    }

    struct ApkUpdate {
        bytes24 apkHash;
        uint32 updateBlockNumber;
        uint32 nextUpdateBlockNumber;
    }

    struct StakeUpdate {
        uint32 updateBlockNumber;
        uint32 nextUpdateBlockNumber;
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
    error QuorumDoesNotExist(uint8 quorumNumber);
    /// No entry of the history starts at or before the block (the operator was never registered by then).
    error NoUpdateAtBlock(bytes32 operatorId, uint32 blockNumber);
    /// The entry at `index` is not the one valid at `blockNumber`.
    error IndexNotValidAtBlock(uint256 index, uint32 blockNumber);
    error IndexOutOfRange(uint256 index, uint256 length);

    address public immutable owner;

    /// Operator address => its id (the hash of its G1 key, bound forever once set) and registration state.
    mapping(address => Operator) private _operators;
    /// Operator id => the address that registered it (bound forever once set).
    mapping(bytes32 => address) private _operatorOfId;
    /// Operator id => G1 public key.
    mapping(bytes32 => BN254.G1Point) private _pubkeysG1;
    /// Every operator id ever registered, in order of first registration (getOperatorListAtBlockNumber).
    bytes32[] private _operatorIds;
    /// Operator id => quorum bitmap history (bit 0: registered in quorum 0).
    mapping(bytes32 => QuorumBitmapUpdate[]) private _bitmapHistory;
    /// Operator id => stake history in quorum 0.
    mapping(bytes32 => StakeUpdate[]) private _operatorStakeHistory;
    /// Quorum 0's total stake history.
    StakeUpdate[] private _totalStakeHistory;
    /// Quorum 0's aggregate public key (sum of the registered operators' G1 keys) and its hash history.
    BN254.G1Point private _currentApk;
    ApkUpdate[] private _apkHistory;

    constructor() {
        owner = msg.sender;
        // As EigenLayer initializes a quorum: a zero apk and a zero total stake from the creation block on.
        _apkHistory.push(ApkUpdate(bytes24(0), uint32(block.number), 0));
        _totalStakeHistory.push(StakeUpdate(uint32(block.number), 0, 0));
    }

    modifier onlyOwner() {
        if (msg.sender != owner) revert CallerIsNotOwner(msg.sender);
        _;
    }

    modifier onlyQuorumZero(uint8 quorumNumber) {
        if (quorumNumber != QUORUM_NUMBER) revert QuorumDoesNotExist(quorumNumber);
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

        if (keyOwner == address(0)) {
            _operatorOfId[operatorId] = msg.sender;
            _pubkeysG1[operatorId] = pubkeyG1;
            _operatorIds.push(operatorId);
            operator.operatorId = operatorId;
            // Like BLSApkRegistry: the key is registered once per operator, forever.
            emit NewPubkeyRegistration(msg.sender, pubkeyG1, pubkeyG2);
        }
        operator.registered = true;
        _recordBitmap(operatorId, 1);
        _updateApk(BN254.G1Point(pubkeyG1.X, pubkeyG1.Y));
        emit OperatorSocketUpdate(operatorId, socket);
        emit OperatorRegistered(msg.sender, operatorId);
    }

    /// Deregister the caller: its stake drops to zero, then it is out.
    function deregisterOperator() external {
        Operator storage operator = _operators[msg.sender];
        if (!operator.registered) revert OperatorNotRegistered(msg.sender);
        bytes32 operatorId = operator.operatorId;
        if (_current(_operatorStakeHistory[operatorId]) != 0) {
            _setStake(operatorId, 0);
            emit OperatorStakeUpdate(operatorId, QUORUM_NUMBER, 0);
        }
        operator.registered = false;
        _recordBitmap(operatorId, 0);
        _updateApk(BN254.negate(_pubkeysG1[operatorId]));
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

    // ------------------------------------------------------------------ operators

    function isRegistered(bytes32 operatorId) public view returns (bool) {
        address operator = _operatorOfId[operatorId];
        return operator != address(0) && _operators[operator].registered;
    }

    /// The operator id the address registered with (zero if it never registered).
    function getOperatorId(address operator) external view returns (bytes32) {
        return _operators[operator].operatorId;
    }

    /// The address bound to an operator id (zero if none).
    function getOperatorAddress(bytes32 operatorId) public view returns (address) {
        return _operatorOfId[operatorId];
    }

    /// RegistryCoordinator's name for getOperatorAddress.
    function getOperatorFromId(bytes32 operatorId) external view returns (address) {
        return _operatorOfId[operatorId];
    }

    function getOperatorPubkeyG1(bytes32 operatorId) external view returns (BN254.G1Point memory) {
        return _pubkeysG1[operatorId];
    }

    /// The ids of the operators registered in the quorum at the end of `blockNumber`, in order of first
    /// registration (IndexRegistry's view; this devnet keeps no operator indices).
    function getOperatorListAtBlockNumber(uint8 quorumNumber, uint32 blockNumber)
        external
        view
        onlyQuorumZero(quorumNumber)
        returns (bytes32[] memory ids)
    {
        uint256 count = _operatorIds.length;
        ids = new bytes32[](count);
        uint256 found = 0;
        for (uint256 i = 0; i < count; i++) {
            bytes32 operatorId = _operatorIds[i];
            (bool exists, uint256 index) = _bitmapIndexAt(_bitmapHistory[operatorId], blockNumber);
            if (exists && _bitmapHistory[operatorId][index].quorumBitmap & 1 != 0) ids[found++] = operatorId;
        }
        assembly ("memory-safe") {
            mstore(ids, found)
        }
    }

    // ------------------------------------------------------------------ quorum bitmaps (RegistryCoordinator)

    function getCurrentQuorumBitmap(bytes32 operatorId) external view returns (uint192) {
        QuorumBitmapUpdate[] storage history = _bitmapHistory[operatorId];
        return history.length == 0 ? 0 : history[history.length - 1].quorumBitmap;
    }

    function getQuorumBitmapHistoryLength(bytes32 operatorId) external view returns (uint256) {
        return _bitmapHistory[operatorId].length;
    }

    function getQuorumBitmapUpdateByIndex(bytes32 operatorId, uint256 index)
        external
        view
        returns (QuorumBitmapUpdate memory)
    {
        QuorumBitmapUpdate[] storage history = _bitmapHistory[operatorId];
        if (index >= history.length) revert IndexOutOfRange(index, history.length);
        return history[index];
    }

    /// For each operator, the index of its bitmap entry valid at `blockNumber`; reverts for an operator with no
    /// entry at or before the block.
    function getQuorumBitmapIndicesAtBlockNumber(uint32 blockNumber, bytes32[] calldata operatorIds)
        external
        view
        returns (uint32[] memory indices)
    {
        indices = new uint32[](operatorIds.length);
        for (uint256 i = 0; i < operatorIds.length; i++) {
            (bool exists, uint256 index) = _bitmapIndexAt(_bitmapHistory[operatorIds[i]], blockNumber);
            if (!exists) revert NoUpdateAtBlock(operatorIds[i], blockNumber);
            indices[i] = uint32(index);
        }
    }

    /// The operator's quorum bitmap at `blockNumber`, read at `index`, which must be the entry valid then.
    function getQuorumBitmapAtBlockNumberByIndex(bytes32 operatorId, uint32 blockNumber, uint256 index)
        external
        view
        returns (uint192)
    {
        QuorumBitmapUpdate[] storage history = _bitmapHistory[operatorId];
        if (index >= history.length) revert IndexOutOfRange(index, history.length);
        QuorumBitmapUpdate storage update = history[index];
        _checkValid(index, blockNumber, update.updateBlockNumber, update.nextUpdateBlockNumber);
        return update.quorumBitmap;
    }

    // ------------------------------------------------------------------ quorum apk (BLSApkRegistry)

    /// The current aggregate G1 key of the quorum's registered operators.
    function getApk(uint8 quorumNumber) external view onlyQuorumZero(quorumNumber) returns (BN254.G1Point memory) {
        return _currentApk;
    }

    function getApkHistoryLength(uint8 quorumNumber) external view onlyQuorumZero(quorumNumber) returns (uint32) {
        return uint32(_apkHistory.length);
    }

    function getApkUpdateAtIndex(uint8 quorumNumber, uint256 index)
        external
        view
        onlyQuorumZero(quorumNumber)
        returns (ApkUpdate memory)
    {
        if (index >= _apkHistory.length) revert IndexOutOfRange(index, _apkHistory.length);
        return _apkHistory[index];
    }

    /// For each quorum, the index of its apk entry valid at `blockNumber`.
    function getApkIndicesAtBlockNumber(bytes calldata quorumNumbers, uint256 blockNumber)
        external
        view
        returns (uint32[] memory indices)
    {
        indices = new uint32[](quorumNumbers.length);
        for (uint256 i = 0; i < quorumNumbers.length; i++) {
            if (uint8(quorumNumbers[i]) != QUORUM_NUMBER) revert QuorumDoesNotExist(uint8(quorumNumbers[i]));
            uint256 length = _apkHistory.length;
            uint256 index = length;
            // The latest entry first: tasks are answered close to the head.
            while (index > 0 && _apkHistory[index - 1].updateBlockNumber > blockNumber) index--;
            if (index == 0) revert NoUpdateAtBlock(bytes32(0), uint32(blockNumber));
            indices[i] = uint32(index - 1);
        }
    }

    /// The apk hash at `blockNumber`, read at `index`, which must be the entry valid then.
    function getApkHashAtBlockNumberAndIndex(uint8 quorumNumber, uint32 blockNumber, uint256 index)
        external
        view
        onlyQuorumZero(quorumNumber)
        returns (bytes24)
    {
        if (index >= _apkHistory.length) revert IndexOutOfRange(index, _apkHistory.length);
        ApkUpdate storage update = _apkHistory[index];
        _checkValid(index, blockNumber, update.updateBlockNumber, update.nextUpdateBlockNumber);
        return update.apkHash;
    }

    // ------------------------------------------------------------------ stakes (StakeRegistry)

    function getOperatorStake(bytes32 operatorId) external view returns (uint96) {
        return _current(_operatorStakeHistory[operatorId]);
    }

    function getTotalStake() external view returns (uint96) {
        return _current(_totalStakeHistory);
    }

    /// The operator's stake as of the end of `blockNumber` (zero before its first stake).
    function getOperatorStakeAtBlock(bytes32 operatorId, uint32 blockNumber) external view returns (uint96) {
        return _stakeAt(_operatorStakeHistory[operatorId], blockNumber);
    }

    /// StakeRegistry's name for the stake at a block.
    function getStakeAtBlockNumber(bytes32 operatorId, uint8 quorumNumber, uint32 blockNumber)
        external
        view
        onlyQuorumZero(quorumNumber)
        returns (uint96)
    {
        return _stakeAt(_operatorStakeHistory[operatorId], blockNumber);
    }

    /// The total stake as of the end of `blockNumber`.
    function getTotalStakeAtBlock(uint32 blockNumber) external view returns (uint96) {
        return _stakeAt(_totalStakeHistory, blockNumber);
    }

    function getOperatorStakeHistoryLength(bytes32 operatorId) external view returns (uint256) {
        return _operatorStakeHistory[operatorId].length;
    }

    function getOperatorStakeUpdateAtIndex(bytes32 operatorId, uint256 index)
        external
        view
        returns (StakeUpdate memory)
    {
        StakeUpdate[] storage history = _operatorStakeHistory[operatorId];
        if (index >= history.length) revert IndexOutOfRange(index, history.length);
        return history[index];
    }

    function getTotalStakeHistoryLength() external view returns (uint256) {
        return _totalStakeHistory.length;
    }

    /// The index of the operator's stake entry valid at `blockNumber`; reverts when there is none.
    function getStakeUpdateIndexAtBlockNumber(bytes32 operatorId, uint8 quorumNumber, uint32 blockNumber)
        external
        view
        onlyQuorumZero(quorumNumber)
        returns (uint32)
    {
        (bool exists, uint256 index) = _stakeIndexAt(_operatorStakeHistory[operatorId], blockNumber);
        if (!exists) revert NoUpdateAtBlock(operatorId, blockNumber);
        return uint32(index);
    }

    /// For each quorum, the index of its total stake entry valid at `blockNumber`.
    function getTotalStakeIndicesAtBlockNumber(uint32 blockNumber, bytes calldata quorumNumbers)
        external
        view
        returns (uint32[] memory indices)
    {
        indices = new uint32[](quorumNumbers.length);
        for (uint256 i = 0; i < quorumNumbers.length; i++) {
            if (uint8(quorumNumbers[i]) != QUORUM_NUMBER) revert QuorumDoesNotExist(uint8(quorumNumbers[i]));
            (bool exists, uint256 index) = _stakeIndexAt(_totalStakeHistory, blockNumber);
            if (!exists) revert NoUpdateAtBlock(bytes32(0), blockNumber);
            indices[i] = uint32(index);
        }
    }

    /// The operator's stake at `blockNumber`, read at `index`, which must be the entry valid then.
    function getStakeAtBlockNumberAndIndex(uint8 quorumNumber, uint32 blockNumber, bytes32 operatorId, uint256 index)
        external
        view
        onlyQuorumZero(quorumNumber)
        returns (uint96)
    {
        return _stakeAtIndex(_operatorStakeHistory[operatorId], blockNumber, index);
    }

    /// The total stake at `blockNumber`, read at `index`, which must be the entry valid then.
    function getTotalStakeAtBlockNumberFromIndex(uint8 quorumNumber, uint32 blockNumber, uint256 index)
        external
        view
        onlyQuorumZero(quorumNumber)
        returns (uint96)
    {
        return _stakeAtIndex(_totalStakeHistory, blockNumber, index);
    }

    // ------------------------------------------------------------------ proof of possession

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

    function _checkValid(uint256 index, uint32 blockNumber, uint32 updateBlock, uint32 nextUpdateBlock)
        private
        pure
    {
        if (updateBlock > blockNumber || (nextUpdateBlock != 0 && nextUpdateBlock <= blockNumber)) {
            revert IndexNotValidAtBlock(index, blockNumber);
        }
    }

    function _recordBitmap(bytes32 operatorId, uint192 bitmap) private {
        QuorumBitmapUpdate[] storage history = _bitmapHistory[operatorId];
        uint32 blockNumber = uint32(block.number);
        uint256 length = history.length;
        if (length != 0 && history[length - 1].updateBlockNumber == blockNumber) {
            history[length - 1].quorumBitmap = bitmap;
        } else {
            if (length != 0) history[length - 1].nextUpdateBlockNumber = blockNumber;
            history.push(QuorumBitmapUpdate(blockNumber, 0, bitmap));
        }
    }

    function _updateApk(BN254.G1Point memory delta) private {
        BN254.G1Point memory apk = _currentApk.plus(delta);
        _currentApk = apk;
        bytes24 apkHash = bytes24(BN254.hashG1Point(apk));
        uint32 blockNumber = uint32(block.number);
        ApkUpdate storage last = _apkHistory[_apkHistory.length - 1];
        if (last.updateBlockNumber == blockNumber) {
            last.apkHash = apkHash;
        } else {
            last.nextUpdateBlockNumber = blockNumber;
            _apkHistory.push(ApkUpdate(apkHash, blockNumber, 0));
        }
    }

    function _setStake(bytes32 operatorId, uint96 stake) private {
        StakeUpdate[] storage history = _operatorStakeHistory[operatorId];
        uint96 previous = _current(history);
        _record(history, stake);
        _record(_totalStakeHistory, _current(_totalStakeHistory) - previous + stake);
    }

    function _record(StakeUpdate[] storage history, uint96 stake) private {
        uint32 blockNumber = uint32(block.number);
        uint256 length = history.length;
        if (length != 0 && history[length - 1].updateBlockNumber == blockNumber) {
            history[length - 1].stake = stake;
        } else {
            if (length != 0) history[length - 1].nextUpdateBlockNumber = blockNumber;
            history.push(StakeUpdate(blockNumber, 0, stake));
        }
    }

    function _current(StakeUpdate[] storage history) private view returns (uint96) {
        uint256 length = history.length;
        return length == 0 ? 0 : history[length - 1].stake;
    }

    /// (true, index of the last entry with updateBlockNumber <= blockNumber), or (false, 0) (binary search).
    function _stakeIndexAt(StakeUpdate[] storage history, uint32 blockNumber)
        private
        view
        returns (bool, uint256)
    {
        uint256 low = 0;
        uint256 high = history.length;
        // Invariant: entries [0, low) start <= blockNumber, entries [high, length) start > blockNumber.
        while (low < high) {
            uint256 mid = (low + high) / 2;
            if (history[mid].updateBlockNumber <= blockNumber) low = mid + 1;
            else high = mid;
        }
        return low == 0 ? (false, 0) : (true, low - 1);
    }

    function _bitmapIndexAt(QuorumBitmapUpdate[] storage history, uint32 blockNumber)
        private
        view
        returns (bool, uint256)
    {
        uint256 low = 0;
        uint256 high = history.length;
        while (low < high) {
            uint256 mid = (low + high) / 2;
            if (history[mid].updateBlockNumber <= blockNumber) low = mid + 1;
            else high = mid;
        }
        return low == 0 ? (false, 0) : (true, low - 1);
    }

    /// The stake of the entry valid at blockNumber, or zero before the first entry.
    function _stakeAt(StakeUpdate[] storage history, uint32 blockNumber) private view returns (uint96) {
        (bool exists, uint256 index) = _stakeIndexAt(history, blockNumber);
        return exists ? history[index].stake : 0;
    }

    function _stakeAtIndex(StakeUpdate[] storage history, uint32 blockNumber, uint256 index)
        private
        view
        returns (uint96)
    {
        if (index >= history.length) revert IndexOutOfRange(index, history.length);
        StakeUpdate storage update = history[index];
        _checkValid(index, blockNumber, update.updateBlockNumber, update.nextUpdateBlockNumber);
        return update.stake;
    }
}
