// SPDX-License-Identifier: MIT
pragma solidity ^0.8.27;

/// The parts of OperatorRegistry (EigenLayer's RegistryCoordinator, BLSApkRegistry, StakeRegistry and
/// IndexRegistry in one) that the retriever reads.
interface IRegistryViews {
    function getQuorumBitmapIndicesAtBlockNumber(uint32 blockNumber, bytes32[] calldata operatorIds)
        external
        view
        returns (uint32[] memory);
    function getQuorumBitmapAtBlockNumberByIndex(bytes32 operatorId, uint32 blockNumber, uint256 index)
        external
        view
        returns (uint192);
    function getApkIndicesAtBlockNumber(bytes calldata quorumNumbers, uint256 blockNumber)
        external
        view
        returns (uint32[] memory);
    function getTotalStakeIndicesAtBlockNumber(uint32 blockNumber, bytes calldata quorumNumbers)
        external
        view
        returns (uint32[] memory);
    function getStakeUpdateIndexAtBlockNumber(bytes32 operatorId, uint8 quorumNumber, uint32 blockNumber)
        external
        view
        returns (uint32);
    function getOperatorListAtBlockNumber(uint8 quorumNumber, uint32 blockNumber)
        external
        view
        returns (bytes32[] memory);
    function getOperatorFromId(bytes32 operatorId) external view returns (address);
    function getStakeAtBlockNumber(bytes32 operatorId, uint8 quorumNumber, uint32 blockNumber)
        external
        view
        returns (uint96);
}

/// @title OperatorStateRetriever: EigenLayer's off-chain helper views, with EigenLayer's signatures and return
///        shapes, over the devnet's OperatorRegistry (passed as `registryCoordinator`).
contract OperatorStateRetriever {
    struct Operator {
        address operator;
        bytes32 operatorId;
        uint96 stake;
    }

    struct CheckSignaturesIndices {
        uint32[] nonSignerQuorumBitmapIndices;
        uint32[] quorumApkIndices;
        uint32[] totalStakeIndices;
        uint32[][] nonSignerStakeIndices;
    }

    error OperatorNotRegisteredInQuorum(bytes32 operatorId, uint8 quorumNumber, uint32 blockNumber);

    /// For each quorum, the operators registered in it at the end of `blockNumber`, with their stake then.
    function getOperatorState(address registryCoordinator, bytes calldata quorumNumbers, uint32 blockNumber)
        external
        view
        returns (Operator[][] memory operators)
    {
        IRegistryViews registry = IRegistryViews(registryCoordinator);
        operators = new Operator[][](quorumNumbers.length);
        for (uint256 q = 0; q < quorumNumbers.length; q++) {
            uint8 quorumNumber = uint8(quorumNumbers[q]);
            bytes32[] memory ids = registry.getOperatorListAtBlockNumber(quorumNumber, blockNumber);
            operators[q] = new Operator[](ids.length);
            for (uint256 i = 0; i < ids.length; i++) {
                operators[q][i] = Operator(
                    registry.getOperatorFromId(ids[i]),
                    ids[i],
                    registry.getStakeAtBlockNumber(ids[i], quorumNumber, blockNumber)
                );
            }
        }
    }

    /// The history indices checkSignatures needs for these non-signers (sorted by id, as checkSignatures
    /// requires) at `referenceBlockNumber`. Reverts if a non-signer was not registered in a quorum then.
    function getCheckSignaturesIndices(
        address registryCoordinator,
        uint32 referenceBlockNumber,
        bytes calldata quorumNumbers,
        bytes32[] calldata nonSignerOperatorIds
    ) external view returns (CheckSignaturesIndices memory indices) {
        IRegistryViews registry = IRegistryViews(registryCoordinator);
        indices.nonSignerQuorumBitmapIndices =
            registry.getQuorumBitmapIndicesAtBlockNumber(referenceBlockNumber, nonSignerOperatorIds);
        indices.quorumApkIndices = registry.getApkIndicesAtBlockNumber(quorumNumbers, referenceBlockNumber);
        indices.totalStakeIndices = registry.getTotalStakeIndicesAtBlockNumber(referenceBlockNumber, quorumNumbers);
        indices.nonSignerStakeIndices = new uint32[][](quorumNumbers.length);
        for (uint256 q = 0; q < quorumNumbers.length; q++) {
            uint8 quorumNumber = uint8(quorumNumbers[q]);
            indices.nonSignerStakeIndices[q] = new uint32[](nonSignerOperatorIds.length);
            for (uint256 i = 0; i < nonSignerOperatorIds.length; i++) {
                bytes32 operatorId = nonSignerOperatorIds[i];
                uint192 bitmap = registry.getQuorumBitmapAtBlockNumberByIndex(
                    operatorId, referenceBlockNumber, indices.nonSignerQuorumBitmapIndices[i]
                );
                if ((bitmap >> quorumNumber) & 1 == 0) {
                    revert OperatorNotRegisteredInQuorum(operatorId, quorumNumber, referenceBlockNumber);
                }
                indices.nonSignerStakeIndices[q][i] =
                    registry.getStakeUpdateIndexAtBlockNumber(operatorId, quorumNumber, referenceBlockNumber);
            }
        }
    }
}
